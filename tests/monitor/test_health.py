"""The health sweep against a fleet of loopback gateways, on an injected clock that
moves only when the test says: incidents, repairs, recovery, flapping, muting, the
start grace, and a 1,000-instance sweep whose hung checks all end by their timeout."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.billing import Prices
from core.clock import FakeClock, to_iso
from core.health import HealthRecorder
from core.models import ACTOR_API, OperationKind
from core.mute import mute
from core.policy import PolicyTimings
from core.services import CoreServices, build_core
from db.connection import Database
from monitor.health import HealthSweep, SweepSummary
from sim.gateways import GatewayFleetSim, State
from sim.loopback import unique_pool
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE
from tests.provisioner.conftest import World, needs_root

INTERVAL = timedelta(seconds=300)
TIMEOUT_S = 5.0
GRACE_S = 90


@dataclass
class Fleet:
    sim: GatewayFleetSim
    core: CoreServices
    clock: FakeClock
    sweeper: HealthSweep
    ids: list[str]

    async def sweep(self) -> SweepSummary:
        """One sweep, the clock moved past the interval first (as the scheduler would)."""
        self.clock.advance(INTERVAL)
        return await self.sweeper.sweep()

    async def row(self, index: int = 0) -> dict[str, Any]:
        found = await self.core.db.fetch_one(
            "SELECT * FROM instances WHERE id = ?", (self.ids[index],)
        )
        assert found is not None
        return dict(found)

    async def alerts(self) -> list[tuple[str, str]]:
        rows = await self.core.db.fetch_all(
            "SELECT kind, body FROM notifications WHERE recipient = 'ops' "
            "AND kind LIKE 'instance_%' AND kind NOT IN ('instance_requested') ORDER BY id"
        )
        return [(r["kind"], r["body"]) for r in rows]

    async def operations(self) -> list[str]:
        rows = await self.core.db.fetch_all("SELECT kind FROM operations ORDER BY id")
        return [r["kind"] for r in rows]

    async def finish_operations(self) -> None:
        """What the reconciler does with them, as far as the monitor can tell."""
        async with self.core.db.transaction() as conn:
            await conn.execute("UPDATE operations SET state = 'done' WHERE state = 'pending'")


async def make_fleet(
    tmp_path: Any, count: int, *, concurrency: int = 50, started_ago_s: float = 3600
) -> tuple[Fleet, Database]:
    clock = FakeClock(autoadvance=False)
    db = await Database.open(tmp_path / "monitor.db")
    core = build_core(
        db, clock, timings=PolicyTimings(), prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
        lifetime_cap=100,
    )  # fmt: skip
    sim = GatewayFleetSim(unique_pool(), count, port=18789)
    await sim.start()
    ids = []
    started = to_iso(clock.now() - timedelta(seconds=started_ago_s))
    for n, ip in enumerate(sim.ips):
        result = await core.admin.provision(f"c{n}@example.com", None, None, ACTOR_API)
        ids.append(result.instance_id)
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE instances SET status = 'active', server_ip = ?, gateway_started_at = ? "
                "WHERE id = ?",
                (ip, started, result.instance_id),
            )
    sweeper = HealthSweep(
        db, clock, HealthRecorder(db), gateway_port=sim.port, timeout_s=TIMEOUT_S,
        concurrency=concurrency, start_grace_s=GRACE_S,
    )  # fmt: skip
    return Fleet(sim, core, clock, sweeper, ids), db


@pytest.fixture
async def fleet(tmp_path: Any) -> AsyncIterator[Fleet]:
    made, db = await make_fleet(tmp_path, 3)
    yield made
    await made.sim.stop()
    await db.close()


async def test_a_killed_gateway_is_alerted_once_restarted_rebooted_and_recovered(
    fleet: Fleet,
) -> None:
    await fleet.sweep()
    assert (await fleet.row())["health_status"] == "healthy"
    await fleet.sim.set_state(fleet.sim.ips[0], "dead")
    for _ in range(2):
        await fleet.sweep()
    assert await fleet.alerts() == []  # two failures are not an incident yet
    assert (await fleet.row())["health_status"] == "healthy"

    await fleet.sweep()  # the third
    row = await fleet.row()
    assert row["health_status"] == "unhealthy" and row["consecutive_failures"] == 3
    assert await fleet.operations() == ["restart_gateway"]
    [(kind, body)] = await fleet.alerts()
    assert kind == "instance_unhealthy" and fleet.ids[0] in body and "Restarting" in body
    await fleet.finish_operations()

    for _ in range(6):  # failures 4 to 9: the same incident, nothing new said or done
        await fleet.sweep()
    assert len(await fleet.alerts()) == 1
    assert await fleet.operations() == ["restart_gateway"]
    await fleet.sweep()  # the tenth
    assert await fleet.operations() == ["restart_gateway", "reboot"]
    assert [k for k, _ in await fleet.alerts()] == ["instance_unhealthy"] * 2
    await fleet.finish_operations()
    for _ in range(3):
        await fleet.sweep()
    assert len(await fleet.alerts()) == 2

    await fleet.sim.set_state(fleet.sim.ips[0], "up")
    await fleet.sweep()
    alerts = await fleet.alerts()
    assert [k for k, _ in alerts] == ["instance_unhealthy"] * 2 + ["instance_recovered"]
    assert "after 1 h 5 min down" in alerts[-1][1]  # 13 checks, 5 minutes apart
    row = await fleet.row()
    assert row["health_status"] == "healthy" and row["consecutive_failures"] == 0
    assert row["healthy_since"] == to_iso(fleet.clock.now())
    await fleet.sweep()
    assert len(await fleet.alerts()) == 3
    # The other gateways were checked every time and never alerted.
    assert (await fleet.row(1))["health_status"] == "healthy"


async def test_a_flapping_gateway_does_not_spam(fleet: Fleet) -> None:
    ip = fleet.sim.ips[0]
    for _ in range(5):  # two failures, then an answer: never an incident
        states: tuple[State, ...] = ("dead", "dead", "up")
        for state in states:
            await fleet.sim.set_state(ip, state)
            await fleet.sweep()
    assert await fleet.alerts() == [] and await fleet.operations() == []

    async def incident_then_recovery() -> None:
        await fleet.sim.set_state(ip, "dead")
        for _ in range(3):
            await fleet.sweep()
        await fleet.finish_operations()
        await fleet.sim.set_state(ip, "up")
        await fleet.sweep()

    await incident_then_recovery()
    assert [k for k, _ in await fleet.alerts()] == ["instance_unhealthy", "instance_recovered"]
    for _ in range(3):  # three more incidents, each 20 minutes after the last recovery
        await incident_then_recovery()
    kinds = [k for k, _ in await fleet.alerts()]
    assert kinds == ["instance_unhealthy", "instance_recovered", "instance_flapping"]
    assert await fleet.operations() == ["restart_gateway"] * 4  # repairs went on


async def test_a_muted_instance_is_checked_but_neither_alerted_nor_repaired(
    fleet: Fleet,
) -> None:
    until = fleet.clock.now() + timedelta(days=1)
    await mute(fleet.core.lifecycle, fleet.ids[0], until, "tg:1001")
    await fleet.sim.set_state(fleet.sim.ips[0], "dead")
    for _ in range(12):
        await fleet.sweep()
    row = await fleet.row()
    assert row["consecutive_failures"] == 12 and row["health_status"] == "unhealthy"
    assert row["last_health_check"] == to_iso(fleet.clock.now())
    assert await fleet.alerts() == [] and await fleet.operations() == []
    await fleet.sim.set_state(fleet.sim.ips[0], "up")
    await fleet.sweep()
    assert (await fleet.row())["health_status"] == "healthy"
    assert await fleet.alerts() == []  # nothing was said of it, so no recovery either


async def test_the_start_grace_is_respected(fleet: Fleet) -> None:
    await fleet.sim.set_state(fleet.sim.ips[0], "dead")
    started = fleet.clock.now() + INTERVAL - timedelta(seconds=30)  # at the next sweep: 30 s
    async with fleet.core.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET gateway_started_at = ? WHERE id = ?",
            (to_iso(started), fleet.ids[0]),
        )
    summary = await fleet.sweep()
    assert summary.checked == 2 and fleet.sim.requests[fleet.sim.ips[0]] == 0
    fleet.clock.advance(timedelta(seconds=GRACE_S - 30))
    summary = await fleet.sweeper.sweep()
    assert summary.checked == 3 and summary.failed == 1
    assert (await fleet.row())["consecutive_failures"] == 1


async def test_an_instance_under_repair_is_not_checked(fleet: Fleet) -> None:
    await fleet.core.admin.queue_operation(fleet.ids[0], OperationKind.RESTART_GATEWAY, ACTOR_API)
    async with fleet.core.db.transaction() as conn:
        await conn.execute("UPDATE operations SET state = 'running'")
    summary = await fleet.sweep()
    assert summary.checked == 2


async def test_a_thousand_instances_with_a_tenth_hanging_stay_within_bounds(
    tmp_path: Any,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip("needs 4096 open files for 1,000 listeners")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    fleet, db = await make_fleet(tmp_path, 1000, concurrency=50)
    try:
        hung = fleet.sim.ips[::10]
        for ip in hung:
            await fleet.sim.set_state(ip, "hung")
        fleet.clock.advance(INTERVAL)
        sweep = asyncio.create_task(fleet.sweeper.sweep())
        stalls: list[int] = []
        while not sweep.done():
            # The sweep stalls when every slot holds a hung gateway: only the clock (its
            # timeouts) can move it on. Stalled means: the next 50 hung requests have
            # arrived, none of the last 50 is still open, and no other check is waiting.
            received = sum(fleet.sim.requests[ip] for ip in hung)
            if (
                received == 50 * (len(stalls) + 1)
                and fleet.sim.hung_now == 50
                and fleet.clock.sleepers == 50
            ):
                stalls.append(fleet.sim.hung_now)
                fleet.clock.advance(timedelta(seconds=TIMEOUT_S))
            await asyncio.sleep(0.005)
        summary = sweep.result()
        assert stalls == [50, 50]  # 100 hung gateways, 50 at a time
        assert summary.checked == 1000 and summary.failed == 100
        assert summary.max_in_flight == 50
        assert summary.longest_check_s == TIMEOUT_S  # every check ended by its timeout
        assert summary.seconds == 2 * TIMEOUT_S  # well inside the 300 s interval
        assert all(fleet.sim.requests[ip] == 1 for ip in fleet.sim.ips)
        failing = await db.fetch_all(
            "SELECT server_ip FROM instances WHERE consecutive_failures = 1"
        )
        assert sorted(r["server_ip"] for r in failing) == sorted(hung)
    finally:
        await fleet.sim.stop()
        await db.close()


@needs_root
async def test_a_killed_gateway_on_a_real_server_is_repaired_by_the_reconciler(
    world: World,
) -> None:
    """The whole loop against a simulated server: the monitor observes and queues, the
    reconciler restarts over SSH and reboots through Hetzner, and the recovery is told."""
    instance_id = await world.provision()
    await world.reconciler.settle()
    row = await world.instance(instance_id)
    assert row["status"] == "active"
    clock = FakeClock(start=datetime.now(UTC), autoadvance=False)
    sweeper = HealthSweep(
        world.core.db, clock, HealthRecorder(world.core.db, world.reconciler.wake),
        gateway_port=18789, timeout_s=TIMEOUT_S, concurrency=10, start_grace_s=GRACE_S,
    )  # fmt: skip

    async def sweep() -> None:
        clock.advance(INTERVAL)
        await sweeper.sweep()

    async def health_alerts() -> list[str]:
        rows = await world.notifications("instance_unhealthy")
        rows += await world.notifications("instance_recovered")
        return [r["kind"] for r in sorted(rows, key=lambda r: r["id"])]

    await sweep()
    assert (await world.instance(instance_id))["health_status"] == "healthy"
    # Killed, and every start systemd tries dies too: only a human fix will do.
    await world.vps.crash_gateway(row["hetzner_server_id"], times=1_000_000)
    for _ in range(3):
        await sweep()
    assert await health_alerts() == ["instance_unhealthy"]
    await world.reconciler.settle()  # restarts it over SSH: it dies again
    assert await world.operations(instance_id) == [("restart_gateway", "failed")]
    for _ in range(7):
        await sweep()
    assert await health_alerts() == ["instance_unhealthy"] * 2
    await world.reconciler.settle()  # reboots the server through Hetzner
    assert await world.operations(instance_id) == [
        ("restart_gateway", "failed"),
        ("reboot", "failed"),
    ]
    world.vps.vps(row["hetzner_server_id"]).gateway.faults.crash_next_starts = 0  # fixed
    for _ in range(100):  # systemd's next automatic restart brings it up
        await sweep()
        if (await world.instance(instance_id))["health_status"] == "healthy":
            break
        await asyncio.sleep(0.05)
    assert await health_alerts() == ["instance_unhealthy"] * 2 + ["instance_recovered"]
    assert len(await world.operations(instance_id)) == 2  # nothing more was queued
