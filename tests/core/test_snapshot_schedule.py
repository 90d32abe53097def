"""Weekly snapshots: queued a week apart for each active instance, taken by the
reconciler against the simulated Hetzner, and only the newest four kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.clock import FakeClock
from core.snapshot_schedule import queue_weekly_snapshots
from tests.provisioner.conftest import World


def weekly_snapshots(world: World, instance_id: str) -> list[int]:
    return sorted(
        image.id
        for image in world.hetzner_sim.state.images.values()
        if image.type == "snapshot"
        and image.labels.get("instance") == instance_id
        and image.labels.get("kind") == "weekly"
    )


async def test_weekly_snapshots_are_taken_once_a_week_and_four_kept(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "active"
    monitor_clock = FakeClock(start=datetime.now(UTC))

    assert await queue_weekly_snapshots(world.core.db, monitor_clock) == 0  # active < a week
    taken: list[list[int]] = []
    for _ in range(6):
        monitor_clock.advance(timedelta(days=7, minutes=1))
        assert await queue_weekly_snapshots(world.core.db, monitor_clock) == 1
        assert await queue_weekly_snapshots(world.core.db, monitor_clock) == 0  # once
        await world.reconciler.settle()
        taken.append(weekly_snapshots(world, instance_id))
        monitor_clock.advance(timedelta(days=1))
        assert await queue_weekly_snapshots(world.core.db, monitor_clock) == 0  # a day later
    assert [len(t) for t in taken] == [1, 2, 3, 4, 4, 4]
    assert taken[-1] == taken[-2][1:] + taken[-1][-1:]  # the oldest went, the newest came
    operations = await world.operations(instance_id)
    assert operations == [("snapshot", "done")] * 6
