"""The outbox's reads and writes: `notifications` rows and the ops chat's reachability.

A row is `pending` until delivered (`sent`) or refused for good (`failed`, only for a
message that can never be delivered as it is); transient trouble only moves its
`next_attempt_at`, with a capped backoff, so nothing is ever given up for an outage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import aiosqlite

from core.clock import Clock, from_iso, to_iso
from core.journal import record_event
from db.connection import Database

BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 300.0  # after an hour's outage, everything goes within five minutes
BATCH = 1000
OPS_GONE_KEY = "ops_chat_unreachable"


def backoff_s(attempts: int) -> float:
    """5 s, 10 s, 20 s, … capped at 5 minutes (attempts made so far, ≥ 1)."""
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(max(attempts - 1, 0), 16)))


class OutboxStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def pending(self) -> list[aiosqlite.Row]:
        """The oldest pending messages of every recipient: a backlog for one (a thousand
        alerts while the ops chat is unreachable) never hides another's messages."""
        return await self.db.fetch_all(
            "SELECT * FROM (SELECT n.*, ROW_NUMBER() OVER (PARTITION BY CASE WHEN "
            "recipient = 'ops' THEN '' ELSE customer_id END ORDER BY id) AS place "
            "FROM notifications n WHERE status = 'pending') WHERE place <= ? ORDER BY id",
            (BATCH,),
        )

    async def first_due_at(self) -> datetime | None:
        """When the next recipient's oldest message is due (each waits behind its oldest)."""
        row = await self.db.fetch_one(
            "SELECT MIN(next_attempt_at) AS at FROM notifications WHERE id IN ("
            "SELECT MIN(id) FROM notifications WHERE status = 'pending' "
            "GROUP BY CASE WHEN recipient = 'ops' THEN '' ELSE customer_id END)"
        )
        return from_iso(row["at"]) if row is not None and row["at"] else None

    async def customer(self, customer_id: str | None) -> aiosqlite.Row | None:
        if customer_id is None:
            return None
        return await self.db.fetch_one("SELECT * FROM customers WHERE id = ?", (customer_id,))

    async def sent(self, ids: Sequence[int], note: str | None = None) -> None:
        await self._update(
            ids, "status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = ?",
            (to_iso(self.clock.now()), note),
        )  # fmt: skip

    async def failed(self, ids: Sequence[int], error: str) -> None:
        await self._update(
            ids, "status = 'failed', attempts = attempts + 1, last_error = ?", (error[:500],)
        )

    async def later(
        self, ids: Sequence[int], error: str, *, seconds: float | None, counts: bool = True
    ) -> float:
        """Try again after `seconds`, or after the backoff of the first row's attempts.

        `counts=False` for waits that are not the message's failure (pacing, a 429).
        Returns the delay used.
        """
        if not ids:
            return 0.0
        if seconds is None:
            row = await self.db.fetch_one(
                "SELECT attempts FROM notifications WHERE id = ?", (ids[0],)
            )
            seconds = backoff_s((row["attempts"] if row else 0) + 1)
        at = to_iso(self.clock.now() + timedelta(seconds=seconds))
        bump = ", attempts = attempts + 1" if counts else ""
        await self._update(ids, f"next_attempt_at = ?, last_error = ?{bump}", (at, error[:500]))
        return seconds

    async def _update(
        self, ids: Sequence[int], assignments: str, params: tuple[object, ...]
    ) -> None:
        if not ids:
            return
        marks = ", ".join("?" for _ in ids)
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE notifications SET {assignments} WHERE id IN ({marks})",  # noqa: S608
                (*params, *ids),
            )

    # -- where customers and operators can be reached -----------------------------------

    async def set_customer_chat(self, customer_id: str, chat_id: int | None, actor: str) -> None:
        """Move (migration) or drop (bot blocked) a customer's bound chat, with an event."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE customers SET telegram_chat_id = ?, updated_at = ? WHERE id = ?",
                (chat_id, to_iso(now), customer_id),
            )
            await record_event(
                conn, now, actor, "telegram_chat_changed" if chat_id else "telegram_chat_lost",
                customer_id=customer_id, payload={"chat_id": chat_id},
            )  # fmt: skip

    async def ops_gone(self) -> dict[str, object] | None:
        """The ops chat found unreachable ({chat_id, since, reason}), or None."""
        row = await self.db.fetch_one("SELECT value FROM bot_state WHERE key = ?", (OPS_GONE_KEY,))
        if row is None:
            return None
        value: dict[str, object] = json.loads(row["value"])
        return value

    async def set_ops_gone(self, chat_id: int | None, reason: str = "") -> None:
        async with self.db.transaction() as conn:
            if chat_id is None:
                await conn.execute("DELETE FROM bot_state WHERE key = ?", (OPS_GONE_KEY,))
                return
            value = {"chat_id": chat_id, "since": to_iso(self.clock.now()), "reason": reason}
            await conn.execute(
                "INSERT INTO bot_state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (OPS_GONE_KEY, json.dumps(value)),
            )
