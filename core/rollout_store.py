"""The records of fleet upgrades, read side: rollouts, the instances each took up, the
fleet's target version, and the small writes every other rollout module shares.

Operators open, pause, resume and abort rollouts through `core.rollout_admin`; the
driver (`provisioner.rollout`) records its moves through `core.rollout_moves`. Every
change is one transaction with its operations and alerts, so a restart resumes
exactly where the records say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosqlite

from core.clock import Clock, to_iso
from core.health import describe
from core.journal import record_event
from core.lifecycle import LifecycleError
from core.rollouts import OPEN, Member, MemberState, Phase, Rollout, RolloutState
from db.connection import Database
from db.records import fetch_all, fetch_one

UNKNOWN = "unknown"
ACTIVE = "status = 'active' AND desired_state = 'active'"
FAILURE_STATES = (MemberState.ROLLING_BACK, MemberState.ROLLED_BACK, MemberState.FAILED)
OPEN_SQL = "state IN ('running', 'paused', 'halted')"
assert {s.value for s in OPEN} == {"running", "paused", "halted"}

# The fleet's target: the version of the newest rollout past its canary that has not
# been halted or aborted since (a halted rollout's version may be what broke).
TARGET = (
    "SELECT version FROM rollouts WHERE canary_passed_at IS NOT NULL"
    " AND state IN ('running', 'paused', 'done') ORDER BY canary_passed_at DESC, id DESC LIMIT 1"
)
_VERSIONS = f"SELECT id, openclaw_version FROM instances WHERE {ACTIVE} ORDER BY created_at, id"  # noqa: S608


async def target_version(db: Database, default: str) -> str:
    """The OpenClaw version new servers get: the fleet's rollout target, else `default`
    (the OPENCLAW_VERSION setting)."""
    row = await db.fetch_one(TARGET)
    return str(row["version"]) if row else default


def rollout_actor(rollout: Rollout) -> str:
    return f"rollout:{rollout.id}"


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def describe_plan(rollout: Rollout) -> str:
    window = (
        "only in each instance's quiet hour (01–04 UTC)"
        if rollout.respect_quiet_window
        else "at any hour"
    )
    return (
        f"canary {rollout.canary_size}, soak {describe(seconds(rollout.soak_s))}, then batches"
        f" of {rollout.batch_size}; halts at {rollout.max_failures} failures; {window}"
    )


# -- shared writes, inside the caller's transaction ------------------------------------


async def load(conn: aiosqlite.Connection, rollout_id: int) -> Rollout:
    row = await fetch_one(conn, "SELECT * FROM rollouts WHERE id = ?", (rollout_id,))
    if row is None:
        raise LifecycleError("not_found", f"rollout {rollout_id} not found")
    return Rollout.from_row(row)


async def set_fields(
    conn: aiosqlite.Connection, rollout: Rollout, now: datetime, **fields: object
) -> None:
    fields["updated_at"] = to_iso(now)
    columns = ", ".join(f"{name} = ?" for name in fields)  # names are ours, never input
    values = [v.value if isinstance(v, RolloutState | Phase) else v for v in fields.values()]
    await conn.execute(f"UPDATE rollouts SET {columns} WHERE id = ?", (*values, rollout.id))  # noqa: S608


async def record(
    conn: aiosqlite.Connection,
    now: datetime,
    actor: str,
    event: str,
    rollout: Rollout,
    **extra: str,
) -> None:
    payload = {"rollout_id": rollout.id, "version": rollout.version, **extra}
    await record_event(conn, now, actor, event, payload=payload)


async def versions_in(conn: aiosqlite.Connection) -> dict[str, list[str]]:
    """Active instances by OpenClaw version (`unknown` when not known yet)."""
    return _by_version(await fetch_all(conn, _VERSIONS))


async def count_members(
    conn: aiosqlite.Connection, rollout_id: int, states: Iterable[MemberState]
) -> int:
    values = [s.value for s in states]
    marks = ", ".join("?" for _ in values)
    row = await fetch_one(
        conn,
        f"SELECT COUNT(*) FROM rollout_instances WHERE rollout_id = ? AND state IN ({marks})",  # noqa: S608
        (rollout_id, *values),
    )
    return int(row[0]) if row else 0


def _by_version(rows: Iterable[aiosqlite.Row]) -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    for row in rows:
        versions.setdefault(row["openclaw_version"] or UNKNOWN, []).append(str(row["id"]))
    return versions


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    rollout: Rollout
    members: dict[MemberState, list[str]]
    remaining: int  # active, unmuted instances still to upgrade
    left_out: list[str]  # muted or suspended instances not on the version
    versions: dict[str, list[str]] = field(default_factory=dict)  # active instances by version


class RolloutStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def get(self, rollout_id: int) -> Rollout | None:
        row = await self.db.fetch_one("SELECT * FROM rollouts WHERE id = ?", (rollout_id,))
        return Rollout.from_row(row) if row else None

    async def open(self) -> Rollout | None:
        """The rollout running, paused or halted (at most one is)."""
        row = await self.db.fetch_one(
            f"SELECT * FROM rollouts WHERE {OPEN_SQL} ORDER BY id DESC LIMIT 1"  # noqa: S608
        )
        return Rollout.from_row(row) if row else None

    async def latest(self) -> Rollout | None:
        """The newest rollout that ever started (open or finished)."""
        row = await self.db.fetch_one(
            "SELECT * FROM rollouts WHERE started_at IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        return Rollout.from_row(row) if row else None

    async def members(self, rollout_id: int) -> list[Member]:
        rows = await self.db.fetch_all(
            "SELECT * FROM rollout_instances WHERE rollout_id = ? ORDER BY batch, started_at",
            (rollout_id,),
        )
        return [Member.from_row(row) for row in rows]

    async def candidates(self, rollout: Rollout) -> list[aiosqlite.Row]:
        """Active, unmuted instances not on the version that the rollout has not taken up
        (or took up and skipped): `id`, `openclaw_version`, oldest first."""
        return await self.db.fetch_all(
            f"SELECT i.id, i.openclaw_version FROM instances i WHERE {ACTIVE}"  # noqa: S608
            " AND (i.muted_until IS NULL OR i.muted_until <= ?)"
            " AND (i.openclaw_version IS NULL OR i.openclaw_version != ?)"
            " AND NOT EXISTS (SELECT 1 FROM rollout_instances r WHERE r.rollout_id = ?"
            "  AND r.instance_id = i.id AND r.state != 'skipped')"
            " ORDER BY i.created_at, i.id",
            (to_iso(self.clock.now()), rollout.version, rollout.id),
        )

    async def unhealthy(self, instance_ids: Iterable[str]) -> set[str]:
        """Of these, the instances the health monitor finds unhealthy or no longer active."""
        ids = list(instance_ids)
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        rows = await self.db.fetch_all(
            f"SELECT id FROM instances WHERE id IN ({marks})"  # noqa: S608
            f" AND (health_status = 'unhealthy' OR NOT ({ACTIVE}))",
            ids,
        )
        return {str(row["id"]) for row in rows}

    async def provisioning_old(self, version: str) -> int:
        """Instances past their install (seconds from active) with another version."""
        row = await self.db.fetch_one(
            "SELECT COUNT(*) FROM instances WHERE status = 'provisioning'"
            " AND desired_state = 'active' AND step IN ('verify', 'announce')"
            " AND openclaw_version IS NOT NULL AND openclaw_version != ?",
            (version,),
        )
        return int(row[0]) if row else 0

    async def active_count(self) -> int:
        row = await self.db.fetch_one(f"SELECT COUNT(*) FROM instances WHERE {ACTIVE}")  # noqa: S608
        return int(row[0]) if row else 0

    async def versions(self) -> dict[str, list[str]]:
        return _by_version(await self.db.fetch_all(_VERSIONS))

    async def progress(self, rollout: Rollout) -> Progress:
        members: dict[MemberState, list[str]] = {}
        for member in await self.members(rollout.id):
            members.setdefault(member.state, []).append(member.instance_id)
        left_out = await self.db.fetch_all(
            "SELECT id FROM instances WHERE desired_state != 'destroyed'"
            " AND status IN ('active', 'suspended')"
            " AND (status = 'suspended' OR desired_state = 'suspended' OR muted_until > ?)"
            " AND (openclaw_version IS NULL OR openclaw_version != ?) ORDER BY created_at, id",
            (to_iso(self.clock.now()), rollout.version),
        )
        return Progress(
            rollout=rollout,
            members=members,
            remaining=len(await self.candidates(rollout)),
            left_out=[str(row["id"]) for row in left_out],
            versions=await self.versions(),
        )
