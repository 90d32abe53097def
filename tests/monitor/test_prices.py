"""The daily price refresh against the Hetzner simulator's catalog, across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import FakeClock, SystemClock, to_iso
from db.connection import Database
from monitor.prices import refresh_prices_if_due
from provisioner.budget import RequestBudget
from provisioner.hetzner import Hetzner
from sim.hetzner import HetznerSim
from sim.hetzner_catalog import VAT, find_server_type
from sim.loopback import unique_pool

TOKEN = "prices-token"
LOCATIONS = ("fsn1", "nbg1", "hel1")
CAX11_GROSS = float(find_server_type("cax11").monthly_net * VAT)  # type: ignore[union-attr]


@pytest.fixture
async def sim() -> AsyncIterator[HetznerSim]:
    hetzner = HetznerSim(token=TOKEN, time_scale=0.002, address_pool=unique_pool())
    await hetzner.start()
    hetzner.set_rate_limit(10_000, 0.0)  # no refill: what is used was requested
    yield hetzner
    await hetzner.stop()


class Process:
    """What a run of the service holds: its own database connection and Hetzner client."""

    def __init__(self, db: Database, hetzner: Hetzner, clock: FakeClock) -> None:
        self.db, self.hetzner, self.clock = db, hetzner, clock

    @classmethod
    async def start(cls, path: Path, sim: HetznerSim, clock: FakeClock) -> Process:
        hetzner = Hetzner(TOKEN, sim.url, budget=RequestBudget(), clock=SystemClock())
        return cls(await Database.open(path), hetzner, clock)

    async def refresh(self, locations: tuple[str, ...] = LOCATIONS) -> bool:
        return await refresh_prices_if_due(
            self.db, self.clock, self.hetzner, server_type="cax11", locations=locations
        )

    async def prices(self) -> dict[str, tuple[float, str]]:
        rows = await self.db.fetch_all("SELECT * FROM server_prices WHERE server_type = 'cax11'")
        return {r["location"]: (r["monthly_eur"], r["updated_at"]) for r in rows}

    async def stop(self) -> None:
        self.hetzner.close()
        await self.db.close()


def requests(sim: HetznerSim) -> int:
    return 10_000 - sim.rate_limit.remaining


async def test_prices_are_refreshed_once_a_day_across_a_restart(
    tmp_path: Path, sim: HetznerSim
) -> None:
    path = tmp_path / "prices.db"
    clock = FakeClock()
    first = await Process.start(path, sim, clock)
    assert await first.refresh()
    assert requests(sim) == 1  # one GET /server_types for every location
    prices = await first.prices()
    assert set(prices) == set(LOCATIONS)
    assert all(abs(price - CAX11_GROSS) < 0.005 for price, _ in prices.values())
    assert {at for _, at in prices.values()} == {to_iso(clock.now())}

    clock.advance(timedelta(hours=6))
    assert not await first.refresh()
    await first.stop()

    # A restart: new objects, the same database file. The day is not started over.
    clock.advance(timedelta(hours=12))
    second = await Process.start(path, sim, clock)
    assert not await second.refresh()
    assert requests(sim) == 1

    clock.advance(timedelta(hours=6))  # a day after the first refresh
    assert await second.refresh()
    assert not await second.refresh()
    assert requests(sim) == 2
    assert {at for _, at in (await second.prices()).values()} == {to_iso(clock.now())}
    await second.stop()


async def test_a_price_change_is_told_and_unoffered_locations_skipped(
    tmp_path: Path, sim: HetznerSim
) -> None:
    clock = FakeClock()
    process = await Process.start(tmp_path / "prices.db", sim, clock)
    yesterday = to_iso(clock.now() - timedelta(days=1, minutes=1))
    async with process.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO server_prices VALUES ('cax11', 'fsn1', 3.79, ?)", (yesterday,)
        )
    # `ash` has no ARM servers: priced nowhere, skipped, the rest recorded.
    assert await process.refresh(("fsn1", "ash"))
    prices = await process.prices()
    assert set(prices) == {"fsn1"} and abs(prices["fsn1"][0] - CAX11_GROSS) < 0.005
    rows = await process.db.fetch_all("SELECT kind, body FROM notifications")
    assert [r["kind"] for r in rows] == ["server_price"]
    expected = Decimal(str(CAX11_GROSS)).quantize(Decimal("0.01"))
    assert "cax11 in fsn1" in rows[0]["body"] and f"3.79 → {expected}" in rows[0]["body"]

    clock.advance(timedelta(hours=1))
    assert not await process.refresh(("fsn1", "ash"))
    await process.stop()
