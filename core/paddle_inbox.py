"""Paddle events in: stored durably, then applied exactly once.

`accept` commits the raw event before the webhook answers 200; `apply` applies it in
one transaction that also marks it processed, so a crash between the two only means
`apply_pending` finishes the job at start-up. An event that cannot apply yet (a
refund for a purchase we have not heard of) stays deferred and is tried again after
every event that applies. Both are group-committed with concurrent deliveries (one
fsync for many webhooks; each caller resumes only after its group's COMMIT).
"""

from __future__ import annotations

import logging

import aiosqlite

from core.billing import DEFERRED, Billing
from core.clock import Clock, to_iso
from core.paddle_events import Envelope, parse_envelope, validate
from db.connection import Database
from db.records import fetch_one, update

log = logging.getLogger(__name__)


class PaddleInbox:
    def __init__(self, db: Database, clock: Clock, billing: Billing) -> None:
        self.db = db
        self.clock = clock
        self.billing = billing

    async def accept(self, raw: bytes) -> tuple[Envelope, bool]:
        """Store a verified event durably. Returns (envelope, is_new); raises MalformedEvent."""
        envelope = parse_envelope(raw)
        validate(envelope)
        async with self.db.grouped() as conn:
            is_new = await self._store(conn, envelope, raw)
        return envelope, is_new

    async def receive(self, raw: bytes) -> tuple[Envelope, bool, str | None]:
        """`accept` and `apply` in one commit (one fsync, not two, before the 200): a new
        event is stored and applied together; when applying raises, the event is still
        stored, with the error, for a replay or the next start-up. Returns (envelope,
        is_new, outcome); the outcome is None for an event already processed."""
        envelope = parse_envelope(raw)
        validate(envelope)
        outcome: str | None = None
        async with self.db.grouped() as conn:
            is_new = await self._store(conn, envelope, raw)
            if is_new:
                outcome = await self._apply_stored(conn, envelope)
        if not is_new:  # a replay: applied already, or left to apply by a failure
            return envelope, False, await self.apply(envelope.event_id)
        if outcome not in (DEFERRED, "error"):
            log.info("paddle event %s %s: %s", envelope.event_type, envelope.event_id, outcome)
            await self._retry_deferred()
            self.billing.lifecycle.wake()
        return envelope, True, outcome

    async def _store(self, conn: aiosqlite.Connection, envelope: Envelope, raw: bytes) -> bool:
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO paddle_events (event_id, event_type, occurred_at, "
            "notification_id, payload, received_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                envelope.event_id,
                envelope.event_type,
                to_iso(envelope.occurred_at),
                envelope.notification_id,
                raw.decode("utf-8", "replace"),
                to_iso(self.clock.now()),
            ),
        )
        return cursor.rowcount == 1

    async def _apply_stored(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        """Apply an event just stored in this transaction, in a savepoint of its own."""
        await conn.execute("SAVEPOINT applying")
        try:
            outcome = await self.billing.apply(conn, envelope)
            done = {"outcome": outcome, "error": None}
            if outcome != DEFERRED:
                done["processed_at"] = to_iso(self.clock.now())
            await update(conn, "paddle_events", "event_id", envelope.event_id, done)
        except Exception as exc:  # recorded on the event, retried by apply_pending
            await conn.execute("ROLLBACK TO applying")
            await conn.execute("RELEASE applying")
            error = f"{type(exc).__name__}: {exc}"[:1000]
            await update(conn, "paddle_events", "event_id", envelope.event_id, {"error": error})
            log.exception("paddle event %s failed to apply", envelope.event_id)
            return "error"
        await conn.execute("RELEASE applying")
        return outcome

    async def apply(self, event_id: str) -> str | None:
        """Apply a stored event once. Returns its outcome, or None if already processed."""
        outcome = await self._apply_one(event_id)
        if outcome not in (None, DEFERRED, "error"):
            await self._retry_deferred()
            self.billing.lifecycle.wake()
        return outcome

    async def _apply_one(self, event_id: str) -> str | None:
        try:
            async with self.db.grouped() as conn:
                row = await fetch_one(
                    conn, "SELECT * FROM paddle_events WHERE event_id = ?", (event_id,)
                )
                if row is None or row["processed_at"] is not None:
                    return None
                envelope = parse_envelope(row["payload"].encode())
                outcome = await self.billing.apply(conn, envelope)
                done = {"outcome": outcome, "error": None}
                if outcome != DEFERRED:
                    done["processed_at"] = to_iso(self.clock.now())
                await update(conn, "paddle_events", "event_id", event_id, done)
        except Exception as exc:  # recorded on the event, retried by apply_pending
            async with self.db.grouped() as conn:
                error = f"{type(exc).__name__}: {exc}"[:1000]
                await update(conn, "paddle_events", "event_id", event_id, {"error": error})
            log.exception("paddle event %s failed to apply", event_id)
            return "error"
        log.info("paddle event %s %s: %s", envelope.event_type, event_id, outcome)
        return outcome

    async def _retry_deferred(self) -> None:
        rows = await self.db.fetch_all(
            "SELECT event_id FROM paddle_events WHERE processed_at IS NULL AND outcome = ? "
            "ORDER BY occurred_at",
            (DEFERRED,),
        )
        for row in rows:
            await self._apply_one(row["event_id"])

    async def apply_pending(self) -> int:
        """Apply every stored event not yet processed (crash recovery), oldest first."""
        rows = await self.db.fetch_all(
            "SELECT event_id FROM paddle_events WHERE processed_at IS NULL ORDER BY occurred_at"
        )
        for row in rows:
            await self.apply(row["event_id"])
        return len(rows)
