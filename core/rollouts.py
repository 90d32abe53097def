"""Fleet upgrades: one OpenClaw version rolled out over every active instance.

A rollout goes canary → soak → batches. The canary (one instance, or 5 % of the
fleet when that is more) is upgraded through an `upgrade` operation (npm install,
restart, `/readyz`, a clean security audit; rolled back to its previous version when
any of it fails); then the rollout soaks, watching the canaries' health, for `soak_s`;
then the rest go in batches of `batch_size`, which is also the concurrency limit: the
next batch starts once the last one has finished. A failed canary, a canary unhealthy
during the soak, or `max_failures` failed instances in the batches halt the rollout
and alert the operators, who resume (failures so far are forgiven) or abort it.

From the moment the canary has passed, the rollout's version is the fleet's target:
new provisions and reprovisions install it (`rollout_store.target_version`).

Upgrades never run on a muted or suspended instance, and, unless the rollout says
otherwise, only in the instance's quiet hour (the night hour its unattended upgrades
reboot in): a rollout over the whole fleet therefore takes a night.

This module is the rule (pure: rows in, a move out); `core.rollout_store` keeps the
records and `provisioner.rollout` carries the moves out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from core.clock import from_iso

VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?")
CANARY_PERCENT = 5
MAX_BATCH = 100
MAX_FAILURES = 10_000
MAX_SOAK_S = 7 * 24 * 3600


class RolloutState(StrEnum):
    PROPOSED = "proposed"  # asked in the ops group, not confirmed yet
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"  # by failures; an operator resumes or aborts
    ABORTED = "aborted"
    DONE = "done"
    CANCELED = "canceled"  # a proposal turned down


# At most one rollout is open at a time.
OPEN = (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED)


class Phase(StrEnum):
    CANARY = "canary"
    SOAK = "soak"
    BATCHES = "batches"


class MemberState(StrEnum):
    UPGRADING = "upgrading"
    UPGRADED = "upgraded"
    ROLLING_BACK = "rolling_back"  # upgraded, then unhealthy in the soak: going back
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # neither upgraded nor verifiably back on its old version
    SKIPPED = "skipped"  # muted, suspended or destroyed meanwhile: may be taken up again


IN_FLIGHT = frozenset({MemberState.UPGRADING, MemberState.ROLLING_BACK})
FAILURES = frozenset({MemberState.ROLLING_BACK, MemberState.ROLLED_BACK, MemberState.FAILED})


def canary_size_for(fleet: int) -> int:
    """One instance, or 5 % of the fleet when that is more."""
    return max(1, math.ceil(fleet * CANARY_PERCENT / 100))


@dataclass(frozen=True)
class RolloutPlan:
    """What an operator asks for; the numbers default to the settings."""

    version: str
    batch_size: int
    max_failures: int
    soak_s: float
    respect_quiet_window: bool = True
    canary_size: int | None = None  # None: canary_size_for(the fleet) when it starts

    def problem(self) -> str | None:
        """Why the plan cannot run, or None."""
        if not VERSION.fullmatch(self.version):
            return f"not an OpenClaw version: {self.version[:40]!r} (e.g. 2026.9.6)"
        if not 1 <= self.batch_size <= MAX_BATCH:
            return f"batch_size must be from 1 to {MAX_BATCH}"
        if not 1 <= self.max_failures <= MAX_FAILURES:
            return f"max_failures must be from 1 to {MAX_FAILURES}"
        if not 0 <= self.soak_s <= MAX_SOAK_S:
            return f"soak_s must be from 0 to {MAX_SOAK_S}"
        if self.canary_size is not None and not 1 <= self.canary_size <= MAX_BATCH:
            return f"canary must be from 1 to {MAX_BATCH}"
        return None


def _time(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


@dataclass(frozen=True)
class Rollout:
    id: int
    version: str
    previous_version: str
    state: RolloutState
    phase: Phase
    canary_size: int
    batch_size: int
    max_failures: int
    failures_forgiven: int
    soak_s: float
    respect_quiet_window: bool
    soak_until: datetime | None
    canary_passed_at: datetime | None
    halt_reason: str | None
    waiting_for: str | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Rollout:
        return cls(
            id=int(row["id"]),
            version=row["version"],
            previous_version=row["previous_version"],
            state=RolloutState(row["state"]),
            phase=Phase(row["phase"]),
            canary_size=int(row["canary_size"]),
            batch_size=int(row["batch_size"]),
            max_failures=int(row["max_failures"]),
            failures_forgiven=int(row["failures_forgiven"]),
            soak_s=float(row["soak_s"]),
            respect_quiet_window=bool(row["respect_quiet_window"]),
            soak_until=_time(row["soak_until"]),
            canary_passed_at=_time(row["canary_passed_at"]),
            halt_reason=row["halt_reason"],
            waiting_for=row["waiting_for"],
            requested_by=row["requested_by"],
            created_at=from_iso(row["created_at"]),
            started_at=_time(row["started_at"]),
            finished_at=_time(row["finished_at"]),
        )


@dataclass(frozen=True)
class Member:
    """An instance a rollout took up: its batch (0: canary) and how it went."""

    instance_id: str
    batch: int
    state: MemberState
    from_version: str | None
    operation_id: int | None
    detail: str | None

    @classmethod
    def from_row(cls, row: Any) -> Member:
        return cls(
            instance_id=row["instance_id"],
            batch=int(row["batch"]),
            state=MemberState(row["state"]),
            from_version=row["from_version"],
            operation_id=row["operation_id"],
            detail=row["detail"],
        )


@dataclass(frozen=True)
class Candidate:
    """An active, unmuted instance not (known to be) on the rollout's version."""

    instance_id: str
    version: str | None
    quiet_hour: int  # UTC


# -- moves: what the driver does next ------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Upgrade these instances now, as batch `batch` (0: the canary)."""

    instance_ids: tuple[str, ...]
    batch: int


@dataclass(frozen=True)
class Soak:
    until: datetime


@dataclass(frozen=True)
class PassCanary:
    """The soak is over and no canary fell ill: probe them once more, then pass."""

    canaries: tuple[str, ...]


@dataclass(frozen=True)
class Halt:
    reason: str
    roll_back: tuple[str, ...] = ()  # upgraded canaries to take back to their version


@dataclass(frozen=True)
class Complete:
    pass


@dataclass(frozen=True)
class Wait:
    reason: str
    until: datetime | None = None


Move = Start | Soak | PassCanary | Halt | Complete | Wait


def in_quiet_window(now: datetime, quiet_hour: int) -> bool:
    return now.hour == quiet_hour


def _next_hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _ids(members: Sequence[Member]) -> str:
    shown = ", ".join(m.instance_id for m in members[:5])
    return shown + (f" and {len(members) - 5} more" if len(members) > 5 else "")


def next_move(
    rollout: Rollout,
    members: Sequence[Member],
    candidates: Sequence[Candidate],
    now: datetime,
    *,
    unhealthy: Collection[str] = (),
    provisioning_old: int = 0,
) -> Move:
    """The next step of a running rollout.

    `candidates` are the instances still to upgrade (active, unmuted, not on the
    version; members other than skipped ones already left out), `unhealthy` the
    instances the health monitor finds unhealthy (or no longer active), and
    `provisioning_old` how many instances are past their install with an older
    version (they are waited for: once active they are candidates)."""
    in_flight = [m for m in members if m.state in IN_FLIGHT]
    failures = len([m for m in members if m.state in FAILURES]) - rollout.failures_forgiven
    ready = [
        c
        for c in candidates
        if not rollout.respect_quiet_window or in_quiet_window(now, c.quiet_hour)
    ]
    window = Wait(f"the quiet hour of {len(candidates)} instances", _next_hour(now))
    canaries = [m for m in members if m.batch == 0 and m.state is MemberState.UPGRADED]
    phase = rollout.phase
    if phase is Phase.SOAK and not canaries:
        phase = Phase.CANARY  # resumed after its canary was rolled back: a new canary first

    if phase is Phase.CANARY:
        if failures > 0:
            failed = [m for m in members if m.batch == 0 and m.state in FAILURES]
            detail = failed[-1].detail if failed else None
            return Halt(f"canary {_ids(failed)} failed: {detail or 'see its operation'}")
        if in_flight:
            return Wait(f"canary {_ids(in_flight)} upgrading")
        if len(canaries) >= rollout.canary_size or (canaries and not candidates):
            return Soak(now + timedelta(seconds=rollout.soak_s))
        if not candidates:
            if provisioning_old:
                return Wait(f"{provisioning_old} instances being provisioned")
            return Complete()  # nothing (left) to upgrade: every instance has the version
        if not ready:
            return window
        return Start(tuple(c.instance_id for c in ready[: rollout.canary_size - len(canaries)]), 0)

    if phase is Phase.SOAK:
        ill = [m for m in canaries if m.instance_id in unhealthy]
        if ill:
            reason = f"canary {_ids(ill)} unhealthy during the soak"
            return Halt(reason, tuple(m.instance_id for m in ill))
        if rollout.soak_until is not None and now < rollout.soak_until:
            return Wait("the soak", rollout.soak_until)
        return PassCanary(tuple(m.instance_id for m in canaries))

    if failures >= rollout.max_failures:
        failed = [m for m in members if m.state in FAILURES]
        limit = rollout.max_failures
        return Halt(f"{failures} instances failed (the limit is {limit}): {_ids(failed)}")
    if in_flight:
        batch = max(m.batch for m in in_flight)
        return Wait(f"batch {batch}: {len(in_flight)} instances upgrading")
    if ready:
        batch = max((m.batch for m in members), default=0) + 1
        return Start(tuple(c.instance_id for c in ready[: rollout.batch_size]), batch)
    if candidates:
        return window
    if provisioning_old:
        return Wait(f"{provisioning_old} instances being provisioned")
    return Complete()


def versions_text(versions: dict[str, list[str]], ids_per_version: int = 8) -> str:
    """`2026.9.6: 3 (inst_…, inst_…, inst_…)` per line, the most common version first."""
    lines = []
    for version, ids in sorted(versions.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(ids[:ids_per_version])
        more = f", +{len(ids) - ids_per_version}" if len(ids) > ids_per_version else ""
        lines.append(f"{version}: {len(ids)} ({shown}{more})")
    return "\n".join(lines) or "no active instances"
