"""Fleet upgrades against simulated servers: the real reconciler runs the `upgrade`
operations the rollout driver queues, over real SSH, and the real gateway checks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from typing import Any

from core.mute import mute
from core.rollout_admin import RolloutAdmin
from core.rollout_store import target_version
from core.rollouts import MemberState, Phase, Rollout, RolloutPlan, RolloutState
from tests.provisioner.conftest import World, needs_root

pytestmark = needs_root

OLD, NEW, BROKEN = "2026.9.6", "2026.10.1", "2026.10.2"
FINISHED = (RolloutState.DONE, RolloutState.HALTED, RolloutState.ABORTED)


def plan(version: str = NEW, **overrides: Any) -> RolloutPlan:
    values: dict[str, Any] = {
        "version": version,
        "batch_size": 2,
        "max_failures": 2,
        "soak_s": 0.3,
        "respect_quiet_window": False,  # tests run at any hour; tests/core covers the rule
        "canary_size": 1,
    }
    return RolloutPlan(**(values | overrides))


def admin(world: World) -> RolloutAdmin:
    core, default = world.core, world.infra.config.openclaw_version
    return RolloutAdmin(core.db, core.clock, default, core.lifecycle.wake)


async def drive(world: World, rollout_id: int, until: Any = None) -> Rollout:
    """Let the driver and the reconciler work until the rollout is finished (or `until`
    says so); the soak passes in real time."""
    driver, store = world.reconciler.rollouts, world.reconciler.rollouts.store
    async with asyncio.timeout(120):  # a hang fails here instead of at the suite's timeout
        while True:
            due = await driver.tick()
            await world.reconciler.settle()
            rollout = await store.get(rollout_id)
            assert rollout is not None
            if rollout.state in FINISHED or (until is not None and until(rollout)):
                return rollout
            await asyncio.sleep(min(due if due is not None else 0.02, 0.1))


async def active_fleet(world: World, count: int) -> list[str]:
    ids = [await world.provision(f"c{n}@example.com") for n in range(count)]
    await world.reconciler.settle()
    for instance_id in ids:
        assert (await world.instance(instance_id))["status"] == "active"
    return ids


def installed(world: World, instance: dict[str, Any]) -> str:
    """The version npm left on the server itself."""
    machine = world.vps.vps(instance["hetzner_server_id"])
    package = machine.sandbox.read("/usr/lib/node_modules/openclaw/package.json")
    assert package is not None
    return str(json.loads(package)["version"])


async def upgrades(world: World) -> list[dict[str, Any]]:
    rows = await world.core.db.fetch_all(
        "SELECT * FROM operations WHERE kind = 'upgrade' ORDER BY id"
    )
    return [dict(row) for row in rows]


def most_at_once(operations: list[dict[str, Any]]) -> int:
    """The most upgrades that ran at the same moment (from their recorded start and end)."""
    starts = [(op["started_at"], 1) for op in operations]
    edges = sorted(starts + [(op["finished_at"], -1) for op in operations])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same moment
        running += step
        peak = max(peak, running)
    return peak


async def test_a_good_version_reaches_every_active_instance_in_batches(world: World) -> None:
    ids = await active_fleet(world, 7)
    muted, suspended = ids[5], ids[6]
    await mute(world.core.lifecycle, muted, world.core.clock.now() + timedelta(days=1), "tg:1")
    await world.core.admin.suspend(suspended, "unpaid invoice", "tg:1")
    await world.reconciler.settle()

    rollout = await admin(world).start(plan(), "api")
    assert rollout.previous_version == OLD
    rollout = await drive(world, rollout.id)

    assert rollout.state is RolloutState.DONE
    for instance_id in ids[:5]:
        instance = await world.instance(instance_id)
        assert instance["openclaw_version"] == NEW == installed(world, instance)
    for instance_id in (muted, suspended):  # never on a muted or suspended instance
        instance = await world.instance(instance_id)
        assert instance["openclaw_version"] == OLD == installed(world, instance)
    done = await upgrades(world)
    assert sorted(op["instance_id"] for op in done) == sorted(ids[:5])
    assert {op["state"] for op in done} == {"done"} and {op["version"] for op in done} == {NEW}
    # A canary of one, then batches of at most two, never more than two at once.
    members = await world.reconciler.rollouts.store.members(rollout.id)
    batches = [len([m for m in members if m.batch == n]) for n in range(4)]
    assert batches == [1, 2, 2, 0]
    assert {m.state for m in members} == {MemberState.UPGRADED}
    assert most_at_once(done) <= 2
    canary_end = min(op["finished_at"] for op in done)
    assert all(op["started_at"] >= canary_end for op in done[1:])  # the canary went alone
    # The operators heard of the canary passing and of the end, with the versions.
    [passed] = await world.notifications("rollout_progress")
    assert NEW in passed["body"]
    [finished] = await world.notifications("rollout_done")
    assert f"{NEW}: 5" in finished["body"] and f"{OLD}: 1" in finished["body"]
    assert f"image build --version {NEW}" in finished["body"]
    assert await target_version(world.core.db, OLD) == NEW


async def test_a_version_that_never_gets_ready_fails_the_canary_and_halts(world: World) -> None:
    world.infra.config = dataclasses.replace(world.infra.config, start_grace_s=2.5)
    ids = await active_fleet(world, 3)
    world.vps.never_ready_version(BROKEN)

    rollout = await drive(world, (await admin(world).start(plan(BROKEN), "api")).id)

    assert rollout.state is RolloutState.HALTED and rollout.phase is Phase.CANARY
    [canary] = await world.reconciler.rollouts.store.members(rollout.id)
    assert canary.state is MemberState.ROLLED_BACK and canary.batch == 0
    [operation] = await upgrades(world)  # the canary's alone: the others were never touched
    assert operation["instance_id"] == canary.instance_id and operation["state"] == "failed"
    assert f"rolled back to {OLD} (verified)" in operation["result"]
    for instance_id in ids:  # the canary is back on its version, verified, and serving
        instance = await world.instance(instance_id)
        assert instance["openclaw_version"] == OLD == installed(world, instance)
    machine = world.vps.vps((await world.instance(canary.instance_id))["hetzner_server_id"])
    assert machine.commands.matching(rf"npm install -g --allow-scripts=openclaw openclaw@{BROKEN}")
    [alert] = await world.notifications("rollout_halted")
    assert f"canary {canary.instance_id} failed" in alert["body"]
    assert f"{OLD}: 3" in alert["body"] and "/rollout resume" in alert["body"]
    assert await target_version(world.core.db, OLD) == OLD  # new servers keep the old one


async def test_instances_provisioned_mid_rollout_get_the_right_version(world: World) -> None:
    await active_fleet(world, 2)
    rollout = await admin(world).start(plan(soak_s=0.5), "api")
    await world.reconciler.rollouts.tick()  # the canary's upgrade is queued

    early = await world.provision("early@example.com")  # before the canary has passed
    await world.reconciler.settle()
    assert (await world.instance(early))["openclaw_version"] == OLD

    rollout = await drive(world, rollout.id, until=lambda r: r.phase is Phase.BATCHES)
    late = await world.provision("late@example.com")  # the canary has passed
    rollout = await drive(world, rollout.id)

    assert rollout.state is RolloutState.DONE
    late_instance = await world.instance(late)
    assert late_instance["openclaw_version"] == NEW == installed(world, late_instance)
    assert f"==> openclaw {NEW}" in late_instance["provision_log"]  # installed so
    upgraded = [op["instance_id"] for op in await upgrades(world)]
    assert early in upgraded and late not in upgraded
    versions = await world.reconciler.rollouts.store.versions()
    assert list(versions) == [NEW] and len(versions[NEW]) == 4


async def test_failures_in_a_batch_are_rolled_back_and_halt_at_the_limit(world: World) -> None:
    canary, *others = await active_fleet(world, 4)
    for instance_id in others[:2]:  # the first batch's npm install fails on both
        server = (await world.instance(instance_id))["hetzner_server_id"]
        world.vps.fail_command(server, rf"npm install .*openclaw@{NEW}", times=1)

    rollout = await drive(world, (await admin(world).start(plan(), "api")).id)

    assert rollout.state is RolloutState.HALTED and rollout.phase is Phase.BATCHES
    members = {m.instance_id: m for m in await world.reconciler.rollouts.store.members(rollout.id)}
    assert members[canary].state is MemberState.UPGRADED
    for instance_id in others[:2]:
        assert members[instance_id].state is MemberState.ROLLED_BACK
        assert (await world.instance(instance_id))["openclaw_version"] == OLD
    assert others[2] not in members  # halted before the next batch
    [alert] = await world.notifications("rollout_halted")
    assert "2 instances failed (the limit is 2)" in alert["body"]
    assert f"{OLD}: 3" in alert["body"] and f"{NEW}: 1 ({canary})" in alert["body"]
    # Past its canary but halted: new servers keep the version that was there.
    assert await target_version(world.core.db, OLD) == OLD
