"""Customers: found by their Paddle id or made, and their contact filled in later."""

from __future__ import annotations

import logging
from datetime import datetime

import aiosqlite

from core.clock import Clock, to_iso
from core.ids import new_id
from core.journal import record_event
from core.paddle_events import Envelope, customer_event
from db.connection import Database
from db.records import fetch_one, insert, update

log = logging.getLogger(__name__)


async def find_or_create_customer(
    conn: aiosqlite.Connection,
    now: datetime,
    *,
    paddle_customer_id: str | None,
    email: str = "",
    name: str | None = None,
) -> str:
    if paddle_customer_id:
        row = await fetch_one(
            conn, "SELECT id FROM customers WHERE paddle_customer_id = ?", (paddle_customer_id,)
        )
        if row is not None:
            return str(row["id"])
    customer_id = new_id("cust")
    await insert(
        conn,
        "customers",
        {
            "id": customer_id,
            "email": email,
            "name": name,
            "paddle_customer_id": paddle_customer_id,
            "created_at": to_iso(now),
            "updated_at": to_iso(now),
            # Paddle's payloads carry no email: look it up as soon as we can.
            "contact_next_attempt_at": to_iso(now) if paddle_customer_id and not email else None,
        },
    )
    return customer_id


class Customers:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def set_contact(self, customer_id: str, email: str, name: str | None, actor: str) -> None:
        """Paddle's API answered: fill in the email and name (never erase a known email)."""
        async with self.db.transaction() as conn:
            now = self.clock.now()
            row = await fetch_one(
                conn, "SELECT email, name FROM customers WHERE id = ?", (customer_id,)
            )
            if row is None:
                return  # nothing to fill in; the lookup raced a deletion
            await update(
                conn,
                "customers",
                "id",
                customer_id,
                {
                    "email": email or row["email"],
                    "name": name or row["name"],
                    "contact_synced_at": to_iso(now),
                    "contact_next_attempt_at": None,
                    "updated_at": to_iso(now),
                },
            )
            if email and email != row["email"]:
                await record_event(conn, now, actor, "customer_contact", customer_id=customer_id)

    async def contact_failed(self, customer_id: str, error: str, retry_at: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE customers SET contact_attempts = contact_attempts + 1, "
                "contact_next_attempt_at = ? WHERE id = ?",
                (to_iso(retry_at), customer_id),
            )
        log.warning("paddle customer lookup failed: %s", error, extra={"customer_id": customer_id})


async def apply_customer_event(
    conn: aiosqlite.Connection, now: datetime, envelope: Envelope
) -> str:
    """`customer.created|updated`: the contact as Paddle has it, newest event wins."""
    event = customer_event(envelope)
    occurred = to_iso(envelope.occurred_at)
    row = await fetch_one(
        conn, "SELECT * FROM customers WHERE paddle_customer_id = ?", (event.paddle_customer_id,)
    )
    if row is None:
        customer_id = await find_or_create_customer(
            conn,
            now,
            paddle_customer_id=event.paddle_customer_id,
            email=event.email,
            name=event.name,
        )
    elif row["contact_occurred_at"] and row["contact_occurred_at"] > occurred:
        return "stale"
    else:
        customer_id = row["id"]
    await update(
        conn,
        "customers",
        "id",
        customer_id,
        {
            "email": event.email,
            "name": event.name or (row["name"] if row else None),
            "contact_occurred_at": occurred,
            "contact_synced_at": to_iso(now),
            "contact_next_attempt_at": None,
            "updated_at": to_iso(now),
        },
    )
    return "applied"
