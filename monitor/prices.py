"""Hetzner's server-type prices, refreshed daily into `server_prices` (gross monthly
EUR per location), for the cost figures. Prices change (twice in 2026): they are read
from `GET /server_types`, never hard-coded, and the operators hear of each change.

The deadline lives in the database (`server_prices.updated_at`), so the job may run
as often as it likes: a restart neither loses nor repeats a day's refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from core.clock import Clock, from_iso, to_iso
from core.journal import notify_ops, record_event
from core.models import ACTOR_MONITOR
from db.connection import Database
from db.records import fetch_all
from provisioner.hetzner import Hetzner

log = logging.getLogger(__name__)

SERVER_PRICE = "server_price"  # ops alert kind: Hetzner changed a price
REFRESH_EVERY = timedelta(days=1)


async def refresh_prices_if_due(
    db: Database,
    clock: Clock,
    hetzner: Hetzner,
    *,
    server_type: str,
    locations: Sequence[str],
    every: timedelta = REFRESH_EVERY,
) -> bool:
    """Refresh the server type's prices in every configured location when the oldest
    is older than `every` (or none is known); True when it refreshed."""
    if not await prices_due(db, clock.now(), server_type, locations, every):
        return False
    offered = await hetzner.server_type_prices(server_type)  # one request
    prices = {location: offered[location] for location in locations if location in offered}
    if unpriced := [location for location in locations if location not in offered]:
        log.warning("Hetzner offers no %s in %s", server_type, ", ".join(unpriced))
    if not prices:
        return False
    changed = await record_prices(db, clock, server_type, prices)
    log.info("prices of %s refreshed; changed in: %s", server_type, ", ".join(changed) or "none")
    return True


async def prices_due(
    db: Database, now: datetime, server_type: str, locations: Sequence[str], every: timedelta
) -> bool:
    """Due when the oldest price of the configured locations is older than `every`, or
    none is known. (A location added to the settings is priced at the next refresh.)"""
    marks = ", ".join("?" for _ in locations)
    row = await db.fetch_one(
        "SELECT MIN(updated_at) FROM server_prices "  # noqa: S608 - placeholders only
        f"WHERE server_type = ? AND location IN ({marks})",
        (server_type, *locations),
    )
    oldest = row[0] if row else None
    return oldest is None or from_iso(oldest) <= now - every


async def record_prices(
    db: Database, clock: Clock, server_type: str, prices: Mapping[str, float]
) -> list[str]:
    """Store the prices; returns the locations whose price changed (each alerted)."""
    changed: list[str] = []
    async with db.transaction() as conn:
        now = clock.now()
        rows = await fetch_all(
            conn, "SELECT * FROM server_prices WHERE server_type = ?", (server_type,)
        )
        before = {r["location"]: float(r["monthly_eur"]) for r in rows}
        for location, price in sorted(prices.items()):
            await conn.execute(
                "INSERT INTO server_prices (server_type, location, monthly_eur, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (server_type, location) DO UPDATE SET "
                "monthly_eur = excluded.monthly_eur, updated_at = excluded.updated_at",
                (server_type, location, price, to_iso(now)),
            )
            old = before.get(location)
            if old is None or round(old, 2) == round(price, 2):
                continue
            changed.append(location)
            payload = {"server_type": server_type, "location": location, "from": old, "to": price}
            await record_event(conn, now, ACTOR_MONITOR, "server_price_changed", payload=payload)
            await notify_ops(
                conn,
                now,
                SERVER_PRICE,
                f"Hetzner's price of {server_type} in {location} changed: "
                f"{old:.2f} → {price:.2f} EUR a month (gross).",
            )
    return changed
