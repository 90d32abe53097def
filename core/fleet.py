"""The fleet at a glance (/fleet, GET /api/fleet): active instances by OpenClaw version
and by OS update status, as the resource checks last read them, and the rollout."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.resources import ResourceFigures
from core.rollout_store import UNKNOWN, RolloutStore, target_version
from core.rollouts import Rollout
from db.connection import Database


@dataclass(frozen=True)
class FleetView:
    target_version: str  # what new servers get
    versions: dict[str, list[str]]  # active instances by OpenClaw version
    security_updates: dict[str, int] = field(default_factory=dict)  # instance → pending
    other_updates: dict[str, int] = field(default_factory=dict)  # pending, none for security
    reboot_required: list[str] = field(default_factory=list)
    os_unknown: list[str] = field(default_factory=list)  # not read (yet) by a resource check
    up_to_date: int = 0
    oldest_check: str | None = None  # the least recent resource check among them
    rollout: Rollout | None = None  # the open one, else the latest


async def fleet_view(store: RolloutStore, default_version: str) -> FleetView:
    db: Database = store.db
    rows = await db.fetch_all(
        "SELECT id, openclaw_version, resources, resources_checked_at FROM instances"
        " WHERE status = 'active' AND desired_state = 'active' ORDER BY created_at, id"
    )
    versions: dict[str, list[str]] = {}
    security: dict[str, int] = {}
    other: dict[str, int] = {}
    reboot: list[str] = []
    unknown: list[str] = []
    up_to_date = 0
    checked = [row["resources_checked_at"] for row in rows if row["resources_checked_at"]]
    for row in rows:
        instance_id = str(row["id"])
        figures = ResourceFigures.from_json(row["resources"])
        version = row["openclaw_version"] or (figures.openclaw_version if figures else None)
        versions.setdefault(version or UNKNOWN, []).append(instance_id)
        if figures is None or figures.updates_pending is None:
            unknown.append(instance_id)
            continue
        if figures.security_updates:
            security[instance_id] = figures.security_updates
        elif figures.updates_pending:
            other[instance_id] = figures.updates_pending
        if figures.reboot_required:
            reboot.append(instance_id)
        if not figures.updates_pending and not figures.reboot_required:
            up_to_date += 1
    return FleetView(
        target_version=await target_version(db, default_version),
        versions=versions,
        security_updates=security,
        other_updates=other,
        reboot_required=reboot,
        os_unknown=unknown,
        up_to_date=up_to_date,
        oldest_check=min(checked, default=None),
        rollout=await store.open() or await store.latest(),
    )
