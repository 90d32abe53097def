"""The outbox's reading of what is pending: per recipient, oldest first."""

from __future__ import annotations

from bot.outbox_store import BATCH, OutboxStore
from core.clock import FakeClock, to_iso
from db.connection import Database


async def test_a_backlog_for_the_ops_chat_never_hides_a_customers_message(
    db: Database, clock: FakeClock
) -> None:
    now = to_iso(clock.now())
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO customers (id, email, created_at, updated_at) VALUES "
            "('cust_a', 'a@example.com', ?, ?)",
            (now, now),
        )
        await conn.executemany(
            "INSERT INTO notifications (recipient, kind, body, next_attempt_at, created_at) "
            "VALUES ('ops', 'instance_failed', 'x', ?, ?)",
            [(now, now)] * (BATCH + 500),
        )
        await conn.execute(
            "INSERT INTO notifications (recipient, customer_id, kind, ref, next_attempt_at, "
            "created_at) VALUES ('customer', 'cust_a', 'setup', '{}', ?, ?)",
            (now, now),
        )
    pending = await OutboxStore(db, clock).pending()
    assert [row["recipient"] for row in pending].count("customer") == 1
    assert [row["recipient"] for row in pending].count("ops") == BATCH
    assert [row["id"] for row in pending] == sorted(row["id"] for row in pending)
