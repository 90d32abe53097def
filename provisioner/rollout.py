"""The rollout driver: moves the open rollout on, one look at a time.

Level-triggered like the reconciler that runs it (`Reconciler.run` calls `tick` on each
pass): every look reads the records, asks `core.rollouts.next_move` what comes next and
records that move, so a restart simply looks again. The upgrades themselves are
`upgrade` operations the reconciler runs like any other, exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import provisioner.gateway as gateway
from core.rollout_moves import RolloutMoves
from core.rollout_store import RolloutStore
from core.rollouts import (
    Candidate,
    Complete,
    Halt,
    PassCanary,
    Rollout,
    RolloutState,
    Soak,
    Start,
    Wait,
    next_move,
)
from provisioner.infra import Infra
from provisioner.provisioning import reboot_hour

log = logging.getLogger(__name__)

# Moves taken in one look at most (canary passed → first batch is two).
MOVES_PER_TICK = 8


class RolloutDriver:
    def __init__(self, infra: Infra, wake: Callable[[], None]) -> None:
        self.infra = infra
        self.store = RolloutStore(infra.db, infra.clock)
        self.moves = RolloutMoves(infra.db, infra.clock, wake)
        self.quiet_hour: Callable[[str], int] = reboot_hour
        self._lock = asyncio.Lock()

    async def tick(self) -> float | None:
        """Take the open rollout's next moves; seconds until it wants another look (None:
        at the next wake-up, e.g. when an upgrade finishes)."""
        async with self._lock:  # the loop and a test may look at once
            await self.moves.settle()
            for _ in range(MOVES_PER_TICK):
                rollout = await self.store.open()
                if rollout is None or rollout.state is not RolloutState.RUNNING:
                    return None
                again = await self._step(rollout)
                if again is not True:
                    return again
            return 0.0

    async def _step(self, rollout: Rollout) -> float | bool | None:
        """One move; True when the next may follow at once."""
        now = self.infra.clock.now()
        members = await self.store.members(rollout.id)
        candidates = [
            Candidate(row["id"], row["openclaw_version"], self.quiet_hour(row["id"]))
            for row in await self.store.candidates(rollout)
        ]
        canaries = [m.instance_id for m in members if m.batch == 0]
        move = next_move(
            rollout,
            members,
            candidates,
            now,
            unhealthy=await self.store.unhealthy(canaries),
            provisioning_old=await self.store.provisioning_old(rollout.version),
        )
        if isinstance(move, Start):
            # The reconciler runs the upgrades queued here, and their end wakes it again.
            await self.moves.begin(rollout, move.instance_ids, move.batch)
            return None
        if isinstance(move, Soak):
            await self.moves.soak(rollout, move.until)
            return True
        if isinstance(move, PassCanary):
            not_ready = await self._not_ready(move.canaries)
            if not_ready:
                ids = ", ".join(not_ready)
                await self.moves.halt(rollout, f"canary {ids} not ready after the soak", not_ready)
                return None
            await self.moves.pass_canary(rollout)
            return True
        if isinstance(move, Halt):
            await self.moves.halt(rollout, move.reason, move.roll_back)
            return None
        if isinstance(move, Complete):
            await self.moves.complete(rollout)
            return None
        assert isinstance(move, Wait)
        await self.moves.waiting(rollout, move.reason)
        return None if move.until is None else max(0.0, (move.until - now).total_seconds())

    async def _not_ready(self, instance_ids: tuple[str, ...]) -> tuple[str, ...]:
        """The canaries whose gateway does not answer `/readyz` now (the soak's last look,
        from outside, as customers see it)."""
        port = self.infra.config.gateway_port
        bad = []
        for instance_id in instance_ids:
            instance = await self.infra.records.load(instance_id)
            if not await gateway.ready(self.infra.http, instance["server_ip"], port):
                log.warning("canary not ready after the soak", extra={"instance_id": instance_id})
                bad.append(instance_id)
        return tuple(bad)
