"""The rollout driver's moves, recorded: upgrades queued as operations, their outcomes,
the soak, the canary passed, a halt with its rollbacks and alert, the end.

`provisioner.rollout` decides (through `core.rollouts.next_move`) and calls these;
each is one transaction, so a crash between two moves loses neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

import aiosqlite

from core.admin_actions import queue_operation_in
from core.clock import Clock, to_iso
from core.health import describe
from core.journal import notify_ops
from core.models import OperationKind
from core.rollout_store import (
    ACTIVE,
    FAILURE_STATES,
    count_members,
    record,
    rollout_actor,
    seconds,
    set_fields,
    versions_in,
)
from core.rollouts import IN_FLIGHT, MemberState, Phase, Rollout, RolloutState, versions_text
from db.connection import Database
from db.records import fetch_one

log = logging.getLogger(__name__)

_SETTLE = (
    "SELECT r.rollout_id, r.instance_id, r.state, o.state AS op_state, o.result, i.status,"
    " i.desired_state, i.openclaw_version, ro.version FROM rollout_instances r"
    " JOIN operations o ON o.id = r.operation_id JOIN instances i ON i.id = r.instance_id"
    " JOIN rollouts ro ON ro.id = r.rollout_id"
    " WHERE r.state IN ({marks}) AND o.state IN ('done', 'failed', 'canceled')"
)


def outcome(row: aiosqlite.Row) -> MemberState:
    """How a finished upgrade (or rollback) operation went, for the rollout."""
    op_state, was = row["op_state"], MemberState(row["state"])
    if was is MemberState.ROLLING_BACK:
        return MemberState.ROLLED_BACK if op_state == "done" else MemberState.FAILED
    if op_state == "done":
        return MemberState.UPGRADED
    if op_state == "canceled" or row["status"] != "active" or row["desired_state"] != "active":
        return MemberState.SKIPPED  # muted, suspended or destroyed meanwhile
    # The operation leaves the version it verified (NULL when even the rollback failed).
    version = row["openclaw_version"]
    if version is not None and version != row["version"]:
        return MemberState.ROLLED_BACK
    return MemberState.FAILED


class RolloutMoves:
    def __init__(self, db: Database, clock: Clock, wake: Callable[[], None]) -> None:
        self.db = db
        self.clock = clock
        self.wake = wake  # the reconciler, which runs the operations queued here

    async def begin(self, rollout: Rollout, instance_ids: Iterable[str], batch: int) -> list[str]:
        """Queue the upgrade of each instance still active and unmuted, as batch `batch`
        (0: the canary); returns those queued."""
        started = []
        now = self.clock.now()
        what = "canary" if batch == 0 else f"batch {batch}"
        async with self.db.transaction() as conn:
            for instance_id in instance_ids:
                row = await fetch_one(
                    conn,
                    f"SELECT * FROM instances WHERE id = ? AND {ACTIVE}"  # noqa: S608
                    " AND (muted_until IS NULL OR muted_until <= ?)",
                    (instance_id, to_iso(now)),
                )
                if row is None:
                    continue
                operation_id = await self._queue(conn, rollout, row, rollout.version, now)
                await conn.execute(
                    "INSERT OR REPLACE INTO rollout_instances (rollout_id, instance_id, batch,"
                    " state, from_version, operation_id, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        rollout.id,
                        instance_id,
                        batch,
                        MemberState.UPGRADING.value,
                        row["openclaw_version"],
                        operation_id,
                        to_iso(now),
                    ),
                )
                started.append(instance_id)
            waiting = f"{what}: {len(started)} upgrading"
            await set_fields(conn, rollout, now, waiting_for=waiting)
        for instance_id in started:
            log.info(
                "rollout %d: upgrading to %s (%s)", rollout.id, rollout.version, what,
                extra={"instance_id": instance_id},
            )  # fmt: skip
        self.wake()
        return started

    async def settle(self) -> list[tuple[str, MemberState]]:
        """Record how each finished upgrade (or rollback) went, in any rollout (an aborted
        one's last upgrades too)."""
        marks = ", ".join("?" for _ in IN_FLIGHT)
        rows = await self.db.fetch_all(_SETTLE.format(marks=marks), [s.value for s in IN_FLIGHT])
        settled = []
        for row in rows:
            state = outcome(row)
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE rollout_instances SET state = ?, detail = ?, finished_at = ?"
                    " WHERE rollout_id = ? AND instance_id = ? AND state = ?",
                    (
                        state.value,
                        (row["result"] or "")[:300],
                        to_iso(self.clock.now()),
                        row["rollout_id"],
                        row["instance_id"],
                        row["state"],
                    ),
                )
            log.info(
                "rollout %d: %s", row["rollout_id"], state.value,
                extra={"instance_id": row["instance_id"]},
            )  # fmt: skip
            settled.append((str(row["instance_id"]), state))
        return settled

    async def soak(self, rollout: Rollout, until: datetime) -> None:
        async with self.db.transaction() as conn:
            await set_fields(
                conn,
                rollout,
                self.clock.now(),
                phase=Phase.SOAK,
                soak_until=to_iso(until),
                waiting_for="the soak",
            )

    async def pass_canary(self, rollout: Rollout) -> None:
        """From now on new servers get the version, and the batches begin."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            await set_fields(
                conn,
                rollout,
                now,
                phase=Phase.BATCHES,
                canary_passed_at=to_iso(now),
                waiting_for=None,
            )
            await record(conn, now, rollout_actor(rollout), "rollout_canary_passed", rollout)
            text = (
                f"Rollout {rollout.id}: the canary is healthy on OpenClaw {rollout.version}"
                f" after a soak of {describe(seconds(rollout.soak_s))}. New servers get"
                f" {rollout.version} from now on; the others follow in batches of"
                f" {rollout.batch_size}."
            )
            await notify_ops(conn, now, "rollout_progress", text)
        log.info("rollout %d: canary passed", rollout.id)

    async def halt(self, rollout: Rollout, reason: str, roll_back: Iterable[str] = ()) -> None:
        """Halted by failures: take these canaries back to their version, and tell the
        operators why and which instances run which version."""
        now = self.clock.now()
        back = []
        async with self.db.transaction() as conn:
            for instance_id in roll_back:
                if await self._roll_back(conn, rollout, instance_id, now):
                    back.append(instance_id)
            reason = reason[:500]
            await set_fields(
                conn, rollout, now, state=RolloutState.HALTED, halt_reason=reason, waiting_for=None
            )
            actor = rollout_actor(rollout)
            await record(conn, now, actor, "rollout_halted", rollout, reason=reason)
            versions = versions_text(await versions_in(conn))
            going_back = f"\nRolling back {', '.join(back)}." if back else ""
            text = (
                f"Rollout {rollout.id} to OpenClaw {rollout.version} halted: {reason}{going_back}"
                f"\nActive instances by version:\n{versions}\n"
                "/rollout resume to go on, /rollout abort to stop."
            )
            await notify_ops(conn, now, "rollout_halted", text)
        log.warning("rollout %d halted: %s", rollout.id, reason)
        if back:
            self.wake()

    async def complete(self, rollout: Rollout) -> None:
        now = self.clock.now()
        async with self.db.transaction() as conn:
            row = await fetch_one(
                conn,
                f"SELECT COUNT(*) FROM instances WHERE {ACTIVE} AND openclaw_version = ?",  # noqa: S608
                (rollout.version,),
            )
            changes: dict[str, object] = {
                "state": RolloutState.DONE,
                "finished_at": to_iso(now),
                "waiting_for": None,
            }
            # Nothing needed a canary (the fleet had the version already): the version
            # becomes the target when some instance runs it, i.e. it has been seen to work.
            if rollout.canary_passed_at is None and row is not None and int(row[0]) > 0:
                changes["canary_passed_at"] = to_iso(now)
            await set_fields(conn, rollout, now, **changes)
            await record(conn, now, rollout_actor(rollout), "rollout_done", rollout)
            upgraded = await count_members(conn, rollout.id, (MemberState.UPGRADED,))
            failed = await count_members(conn, rollout.id, FAILURE_STATES)
            versions = versions_text(await versions_in(conn))
            text = (
                f"Rollout {rollout.id} to OpenClaw {rollout.version} done: {upgraded} upgraded,"
                f" {failed} failed.\nActive instances by version:\n{versions}\n"
                f"Golden image for it: openclaw-hosted image build --version {rollout.version}"
            )
            await notify_ops(conn, now, "rollout_done", text)
        log.info("rollout %d done", rollout.id)

    async def waiting(self, rollout: Rollout, reason: str) -> None:
        """What it waits for, for /rollout (written only when it changes)."""
        if rollout.waiting_for == reason:
            return
        async with self.db.transaction() as conn:
            await set_fields(conn, rollout, self.clock.now(), waiting_for=reason)

    async def _queue(
        self,
        conn: aiosqlite.Connection,
        rollout: Rollout,
        instance: aiosqlite.Row,
        version: str,
        now: datetime,
    ) -> int:
        operation_id = await queue_operation_in(
            conn, now, instance, OperationKind.UPGRADE, rollout_actor(rollout)
        )
        await conn.execute(
            "UPDATE operations SET version = ? WHERE id = ?", (version, operation_id)
        )
        return operation_id

    async def _roll_back(
        self, conn: aiosqlite.Connection, rollout: Rollout, instance_id: str, now: datetime
    ) -> bool:
        instance = await fetch_one(
            conn,
            f"SELECT * FROM instances WHERE id = ? AND {ACTIVE}",  # noqa: S608
            (instance_id,),
        )
        member = await fetch_one(
            conn,
            "SELECT from_version FROM rollout_instances WHERE rollout_id = ? AND instance_id = ?",
            (rollout.id, instance_id),
        )
        if instance is None or member is None:
            return False
        # Unknown when it was taken up (older than version tracking): the fleet's target of
        # then is what its install gave it.
        back_to = member["from_version"] or rollout.previous_version
        operation_id = await self._queue(conn, rollout, instance, back_to, now)
        await conn.execute(
            "UPDATE rollout_instances SET state = ?, operation_id = ?, detail = ?"
            " WHERE rollout_id = ? AND instance_id = ?",
            (
                MemberState.ROLLING_BACK.value,
                operation_id,
                f"rolling back to {back_to}",
                rollout.id,
                instance_id,
            ),
        )
        return True
