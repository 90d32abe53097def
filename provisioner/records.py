"""The reconciler's writes: actual state, steps, the provision log, operation outcomes.

Every write is its own committed transaction, so each step is persisted before the
next one starts and a crash resumes exactly where the record says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import aiosqlite

from core.clock import Clock, to_iso
from core.journal import notify_customer, notify_ops, record_event
from core.models import OperationState, Status
from core.redaction import redact
from db.connection import Database
from db.records import update

log = logging.getLogger(__name__)

ACTOR = "reconciler"
MAX_LOG_CHARS = 64 * 1024


class InstanceRecords:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        # Wakes the outbox sender (wired by app/): a queued message goes now, not at the
        # sender's next idle tick.
        self.on_notify: Callable[[], None] = lambda: None

    async def load(self, instance_id: str) -> aiosqlite.Row:
        row = await self.db.fetch_one("SELECT * FROM instances WHERE id = ?", (instance_id,))
        if row is None:
            raise LookupError(instance_id)
        return row

    async def save(self, instance_id: str, **fields: Any) -> None:
        async with self.db.transaction() as conn:
            fields["updated_at"] = to_iso(self.clock.now())
            await update(conn, "instances", "id", instance_id, fields)

    async def append_log(self, instance_id: str, text: str, secrets: Iterable[str] = ()) -> None:
        """Add to the provision log: redacted, and capped to its newest part."""
        entry = f"[{to_iso(self.clock.now())}] {redact(text, secrets).rstrip()}\n"
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE instances SET provision_log = substr(provision_log || ?, -?) WHERE id = ?",
                (entry, MAX_LOG_CHARS, instance_id),
            )

    async def set_status(self, instance_id: str, status: Status, **fields: Any) -> None:
        now = self.clock.now()
        async with self.db.transaction() as conn:
            row = await conn.execute_fetchall(
                "SELECT status, customer_id FROM instances WHERE id = ?", (instance_id,)
            )
            before = next(iter(row), None)
            changes = {"status": status.value, "updated_at": to_iso(now), **fields}
            await update(conn, "instances", "id", instance_id, changes)
            if before is not None and before["status"] != status.value:
                await record_event(
                    conn,
                    now,
                    ACTOR,
                    "status_changed",
                    instance_id=instance_id,
                    customer_id=before["customer_id"],
                    payload={"from": before["status"], "to": status.value},
                )
        log.info("status %s", status.value, extra={"instance_id": instance_id})

    async def fail(
        self, instance_id: str, step: str | None, error: str, *, look_again_s: float
    ) -> None:
        """`failed`, with the alert the operators need: instance, step, error, never a
        secret. A failed instance that must still be suspended or destroyed is tried
        again after `look_again_s`, without a second alert for the same failure."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT status, last_error FROM instances WHERE id = ?", (instance_id,)
            )
            before = next(iter(rows), None)
            repeated = (
                before is not None
                and before["status"] == Status.FAILED.value
                and before["last_error"] == error[:1000]
            )
            await update(
                conn,
                "instances",
                "id",
                instance_id,
                {
                    "status": Status.FAILED.value,
                    "last_error": error[:1000],
                    "next_attempt_at": to_iso(now + timedelta(seconds=look_again_s)),
                    "pending_action_id": None,
                    "updated_at": to_iso(now),
                },
            )
            if repeated:
                return
            await record_event(
                conn,
                now,
                ACTOR,
                "failed",
                instance_id=instance_id,
                payload={"step": step, "error": error[:1000]},
            )
            await notify_ops(
                conn,
                now,
                "instance_failed",
                f"{instance_id} failed at step {step or '-'}: {error[:500]}. The server is kept; "
                "/retry or /reprovision when ready.",
                instance_id=instance_id,
            )
        log.error("failed at %s: %s", step, error, extra={"instance_id": instance_id})

    async def activate(self, instance_id: str, customer_id: str, setup_ref: dict[str, Any]) -> None:
        """`active`, and the setup message queued, in one transaction: a crash never
        leaves one without the other, nor sends the message twice."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            await notify_customer(
                conn, now, customer_id, "setup", instance_id=instance_id, ref=setup_ref
            )
            await update(
                conn,
                "instances",
                "id",
                instance_id,
                {
                    "status": Status.ACTIVE.value,
                    "step": None,
                    "attempts": 0,
                    "next_attempt_at": None,
                    "last_error": None,
                    "reinstalls": 0,
                    "setup_sent_at": to_iso(now),
                    "gateway_started_at": to_iso(now),
                    "healthy_since": None,
                    "updated_at": to_iso(now),
                },
            )
            await record_event(
                conn,
                now,
                ACTOR,
                "status_changed",
                instance_id=instance_id,
                customer_id=customer_id,
                payload={"from": "provisioning", "to": "active"},
            )
        self.on_notify()
        log.info("status active; setup message queued", extra={"instance_id": instance_id})

    async def gateway_started(self, instance_id: str) -> None:
        """The gateway was (re)started: the monitor's start grace counts from now, and the
        uptime from its next healthy check."""
        await self.save(
            instance_id, gateway_started_at=to_iso(self.clock.now()), healthy_since=None
        )

    async def alert(self, instance_id: str, kind: str, text: str) -> None:
        async with self.db.transaction() as conn:
            await notify_ops(conn, self.clock.now(), kind, text, instance_id=instance_id)
        self.on_notify()

    # -- operations -----------------------------------------------------------------------

    async def next_operation(self, instance_id: str) -> aiosqlite.Row | None:
        return await self.db.fetch_one(
            "SELECT * FROM operations WHERE instance_id = ? AND state IN ('pending', 'running') "
            "ORDER BY id LIMIT 1",
            (instance_id,),
        )

    async def start_operation(self, operation_id: int) -> None:
        now = to_iso(self.clock.now())
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE operations SET state = 'running', started_at = COALESCE(started_at, ?), "
                "updated_at = ? WHERE id = ?",
                (now, now, operation_id),
            )

    async def operation_progress(self, operation_id: int, progress: dict[str, Any]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE operations SET result = ?, updated_at = ? WHERE id = ?",
                (json.dumps(progress), to_iso(self.clock.now()), operation_id),
            )

    async def finish_operation(
        self, operation: aiosqlite.Row, state: OperationState, result: str
    ) -> None:
        now = self.clock.now()
        async with self.db.transaction() as conn:
            await update(
                conn,
                "operations",
                "id",
                operation["id"],
                {
                    "state": state.value,
                    "result": result[:1000],
                    "finished_at": to_iso(now),
                    "updated_at": to_iso(now),
                },
            )
            await record_event(
                conn,
                now,
                ACTOR,
                f"operation_{state.value}",
                instance_id=operation["instance_id"],
                payload={
                    "kind": operation["kind"],
                    "operation_id": operation["id"],
                    "result": result[:300],
                },
            )
            if state is OperationState.FAILED:
                await notify_ops(
                    conn,
                    now,
                    "operation_failed",
                    f"{operation['instance_id']}: {operation['kind']} failed: {result[:300]}",
                    instance_id=operation["instance_id"],
                )
