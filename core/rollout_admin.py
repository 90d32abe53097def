"""What operators do to rollouts (ops group and API): ask for one, confirm it, pause,
resume, abort. At most one rollout is open (running, paused or halted) at a time."""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiosqlite

from core.clock import Clock, to_iso
from core.journal import notify_ops
from core.lifecycle import LifecycleError
from core.rollout_store import (
    FAILURE_STATES,
    OPEN_SQL,
    TARGET,
    RolloutStore,
    count_members,
    describe_plan,
    load,
    record,
    set_fields,
)
from core.rollouts import OPEN, Rollout, RolloutPlan, RolloutState, canary_size_for
from db.connection import Database
from db.records import fetch_one

log = logging.getLogger(__name__)


def _by_telegram_admin(actor: str) -> bool:
    # The bot answers the operator in the group itself: an alert on top would say it twice.
    return actor.startswith("tg:")


class RolloutAdmin:
    def __init__(
        self, db: Database, clock: Clock, default_version: str, wake: Callable[[], None]
    ) -> None:
        self.db = db
        self.clock = clock
        self.default_version = default_version  # OPENCLAW_VERSION, before any rollout
        self.wake = wake
        self.store = RolloutStore(db, clock)

    async def propose(self, plan: RolloutPlan, actor: str) -> Rollout:
        """A rollout asked for in the ops group, to start once confirmed (a button)."""
        return await self._create(plan, actor, RolloutState.PROPOSED)

    async def start(self, plan: RolloutPlan, actor: str) -> Rollout:
        """A rollout that starts at once (the API, whose key is the confirmation)."""
        return await self._create(plan, actor, RolloutState.RUNNING)

    async def confirm(self, rollout_id: int, actor: str) -> Rollout:
        """Start a proposed rollout; single-use (a second press finds it started)."""
        async with self.db.transaction() as conn:
            rollout = await load(conn, rollout_id)
            if rollout.state is not RolloutState.PROPOSED:
                raise LifecycleError("conflict", f"rollout {rollout_id} is already {rollout.state}")
            await self._refuse_open(conn)
            now = self.clock.now()
            await set_fields(conn, rollout, now, state=RolloutState.RUNNING, started_at=to_iso(now))
            await self._started(conn, rollout, actor)
        self.wake()
        return await self._reload(rollout_id)

    async def cancel(self, rollout_id: int, actor: str) -> Rollout:
        """Turn a proposal down (✖️ on the question)."""
        async with self.db.transaction() as conn:
            rollout = await load(conn, rollout_id)
            if rollout.state is not RolloutState.PROPOSED:
                raise LifecycleError("conflict", f"rollout {rollout_id} is already {rollout.state}")
            now = self.clock.now()
            await set_fields(
                conn, rollout, now, state=RolloutState.CANCELED, finished_at=to_iso(now)
            )
            await record(conn, now, actor, "rollout_canceled", rollout)
        return await self._reload(rollout_id)

    async def pause(self, actor: str) -> Rollout:
        """No new upgrades; those under way finish."""
        return await self._change(actor, "pause", (RolloutState.RUNNING,), RolloutState.PAUSED)

    async def resume(self, actor: str) -> Rollout:
        """Go on; after a halt the failures so far are forgiven (the operators looked)."""
        resumable = (RolloutState.PAUSED, RolloutState.HALTED)
        return await self._change(actor, "resume", resumable, RolloutState.RUNNING)

    async def abort(self, actor: str) -> Rollout:
        """Stop for good: upgrades not started are canceled; every instance keeps the
        version it has (the upgraded ones stay upgraded)."""
        return await self._change(actor, "abort", OPEN, RolloutState.ABORTED)

    async def _change(
        self, actor: str, verb: str, allowed: tuple[RolloutState, ...], to: RolloutState
    ) -> Rollout:
        async with self.db.transaction() as conn:
            row = await fetch_one(conn, f"SELECT * FROM rollouts WHERE {OPEN_SQL}")  # noqa: S608
            if row is None:
                raise LifecycleError("not_found", "no rollout is open")
            rollout = Rollout.from_row(row)
            if rollout.state not in allowed:
                message = f"cannot {verb} rollout {rollout.id}: it is {rollout.state}"
                raise LifecycleError("conflict", message)
            now = self.clock.now()
            changes: dict[str, object] = {"state": to, "waiting_for": None}
            if rollout.state is RolloutState.HALTED and to is RolloutState.RUNNING:
                forgiven = await count_members(conn, rollout.id, FAILURE_STATES)
                changes |= {"failures_forgiven": forgiven, "halt_reason": None}
            if to is RolloutState.ABORTED:
                changes["finished_at"] = to_iso(now)
                await conn.execute(
                    "UPDATE operations SET state = 'canceled', result = 'the rollout was aborted',"
                    " finished_at = ?, updated_at = ? WHERE state = 'pending' AND id IN"
                    " (SELECT operation_id FROM rollout_instances WHERE rollout_id = ?)",
                    (to_iso(now), to_iso(now), rollout.id),
                )
            await set_fields(conn, rollout, now, **changes)
            await record(conn, now, actor, f"rollout_{to.value}", rollout)
            if not _by_telegram_admin(actor):
                text = f"Rollout {rollout.id} to OpenClaw {rollout.version}: {to.value} by {actor}."
                await notify_ops(conn, now, "rollout_changed", text)
        log.info("rollout %d %s by %s", rollout.id, to.value, actor)
        self.wake()
        return await self._reload(rollout.id)

    async def _create(self, plan: RolloutPlan, actor: str, state: RolloutState) -> Rollout:
        if (problem := plan.problem()) is not None:
            raise LifecycleError("invalid_input", problem)
        canary = plan.canary_size or canary_size_for(await self.store.active_count())
        async with self.db.transaction() as conn:
            if state is not RolloutState.PROPOSED:
                await self._refuse_open(conn)
            target = await fetch_one(conn, TARGET)
            previous = str(target["version"]) if target else self.default_version
            now = to_iso(self.clock.now())
            cursor = await conn.execute(
                "INSERT INTO rollouts (version, previous_version, state, canary_size, batch_size,"
                " max_failures, soak_s, respect_quiet_window, requested_by, created_at,"
                " started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    plan.version,
                    previous,
                    state.value,
                    canary,
                    plan.batch_size,
                    plan.max_failures,
                    plan.soak_s,
                    int(plan.respect_quiet_window),
                    actor,
                    now,
                    now if state is RolloutState.RUNNING else None,
                    now,
                ),
            )
            rollout = await load(conn, int(cursor.lastrowid or 0))
            if state is RolloutState.RUNNING:
                await self._started(conn, rollout, actor)
            else:
                await record(conn, self.clock.now(), actor, "rollout_proposed", rollout)
        self.wake()
        return rollout

    async def _started(self, conn: aiosqlite.Connection, rollout: Rollout, actor: str) -> None:
        now = self.clock.now()
        await record(conn, now, actor, "rollout_started", rollout)
        log.info("rollout %d to %s started by %s", rollout.id, rollout.version, actor)
        if _by_telegram_admin(actor):
            return
        text = (
            f"Rollout {rollout.id} started by {actor}: OpenClaw {rollout.previous_version} →"
            f" {rollout.version}; {describe_plan(rollout)}."
        )
        await notify_ops(conn, now, "rollout_started", text)

    async def _refuse_open(self, conn: aiosqlite.Connection) -> None:
        row = await fetch_one(conn, f"SELECT id, state FROM rollouts WHERE {OPEN_SQL}")  # noqa: S608
        if row is not None:
            raise LifecycleError(
                "conflict",
                f"rollout {row['id']} is {row['state']}: let it finish or abort it first",
            )

    async def _reload(self, rollout_id: int) -> Rollout:
        rollout = await self.store.get(rollout_id)
        if rollout is None:
            raise LifecycleError("not_found", f"rollout {rollout_id} not found")
        return rollout
