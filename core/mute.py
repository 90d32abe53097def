"""Muting an instance's alerts until a moment (the monitor reads `instances.muted_until`)."""

from __future__ import annotations

from datetime import datetime

from core.clock import to_iso
from core.journal import record_event
from core.lifecycle import Lifecycle
from db.records import update


async def mute(lifecycle: Lifecycle, instance_id: str, until: datetime | None, actor: str) -> None:
    """Mute until `until`, or unmute with None; recorded in `events` with the actor.

    Raises LifecycleError("not_found") for an unknown instance.
    """
    async with lifecycle.db.transaction() as conn:
        instance = await lifecycle.instance(conn, instance_id)
        now = lifecycle.clock.now()
        value = to_iso(until) if until is not None else None
        await update(
            conn, "instances", "id", instance_id, {"muted_until": value, "updated_at": to_iso(now)}
        )
        await record_event(
            conn,
            now,
            actor,
            "muted" if until is not None else "unmuted",
            instance_id=instance_id,
            customer_id=instance["customer_id"],
            payload={"until": value} if value else None,
        )
