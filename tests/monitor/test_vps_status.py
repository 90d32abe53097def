"""The VPS status check against the Hetzner simulator: the real hcloud client through
the facade, a real SQLite file, a fake clock for our side of time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from core.billing import Prices
from core.clock import FakeClock, SystemClock, to_iso
from core.models import ACTOR_API, OperationKind, Status
from core.policy import PolicyTimings
from core.services import CoreServices, build_core
from db.connection import Database
from monitor.vps_status import StatusSummary, VpsStatusCheck
from provisioner.budget import RequestBudget
from provisioner.config import MANAGED_LABEL, MANAGED_VALUE
from provisioner.hetzner import Hetzner
from provisioner.image import GOLDEN_PURPOSE, PURPOSE_LABEL
from provisioner.reconciler import _CANDIDATES
from provisioner.records import InstanceRecords
from sim.hetzner import HetznerSim
from sim.loopback import unique_pool
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE

TOKEN = "status-token"
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZlbWFsZS1rZXktZm9yLXRlc3RzLW9ubHktMDAwMDAw backend"
)
INTERVAL = timedelta(minutes=5)


@dataclass
class Fleet:
    sim: HetznerSim
    hetzner: Hetzner
    core: CoreServices
    clock: FakeClock
    check: VpsStatusCheck
    wakes: list[int] = field(default_factory=list)
    key_id: int | None = None

    @property
    def db(self) -> Database:
        return self.core.db

    async def server(self, name: str, labels: dict[str, str], *, wait: bool = True) -> int:
        if self.key_id is None:
            self.key_id = await self.hetzner.ensure_ssh_key("backend", PUBLIC_KEY)
        server, actions = await self.hetzner.create_server(
            name=name, server_type="cax11", image="ubuntu-24.04", location="fsn1",
            ssh_key_id=self.key_id, user_data="#cloud-config\n", labels=labels,
        )  # fmt: skip
        for action in actions if wait else []:
            await self.hetzner.wait_action(action, expected_s=0.2)
        return server.id

    async def instance(
        self, status: str = "active", desired: str | None = None, *, wait: bool = True
    ) -> tuple[str, int]:
        """An instance with its server, as the reconciler leaves one in `status`."""
        result = await self.core.admin.provision(
            f"c{random.randint(0, 10**9)}@example.com", "Ada", None, ACTOR_API
        )
        row = await self.row(result.instance_id)
        labels = {
            MANAGED_LABEL: MANAGED_VALUE,
            "instance": row["id"],
            "customer": row["customer_id"],
        }
        server_id = await self.server(row["server_name"], labels, wait=wait)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE instances SET status = ?, desired_state = ?, hetzner_server_id = ?, "
                "setup_sent_at = ?, updated_at = ? WHERE id = ?",
                (status, desired or status, server_id, to_iso(self.clock.now()),
                 to_iso(self.clock.now()), row["id"]),
            )  # fmt: skip
        return row["id"], server_id

    async def row(self, instance_id: str) -> dict[str, Any]:
        found = await self.db.fetch_one("SELECT * FROM instances WHERE id = ?", (instance_id,))
        assert found is not None
        return dict(found)

    async def alerts(self, *kinds: str) -> list[str]:
        rows = await self.db.fetch_all(
            "SELECT kind, body FROM notifications WHERE recipient = 'ops' ORDER BY id"
        )
        return [r["body"] for r in rows if r["kind"] in kinds]

    async def run(self) -> StatusSummary:
        """The next scheduled check, with Hetzner's requests counted at the simulator."""
        self.clock.advance(INTERVAL)
        self.sim.set_rate_limit(100_000, 0.0)  # full, and no refill: used = requests sent
        summary = await self.check.check()
        assert summary.calls == 100_000 - self.sim.rate_limit.remaining
        return summary

    async def reconciler_work(self) -> set[str]:
        """The instances the reconciler's own work-finding query picks up now."""
        rows = await self.db.fetch_all(_CANDIDATES, (to_iso(self.clock.now()),))
        return {r["id"] for r in rows}


@pytest.fixture
async def fleet(db: Database, clock: FakeClock) -> AsyncIterator[Fleet]:
    sim = HetznerSim(token=TOKEN, time_scale=0.002, server_limit=200, address_pool=unique_pool())
    await sim.start()
    hetzner = Hetzner(
        TOKEN, sim.url, budget=RequestBudget(), clock=SystemClock(), retry_backoff=lambda n: 0.01
    )
    core = build_core(
        db, clock, timings=PolicyTimings(), prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
        lifetime_cap=100,
    )  # fmt: skip
    wakes: list[int] = []
    check = VpsStatusCheck(db, clock, hetzner, wake=lambda: wakes.append(1))
    yield Fleet(sim, hetzner, core, clock, check, wakes)
    hetzner.close()
    await sim.stop()


async def test_a_server_powered_off_behind_our_back_is_alerted_once_and_resumed(
    fleet: Fleet,
) -> None:
    instance_id, server_id = await fleet.instance()
    summary = await fleet.run()
    assert (summary.listed, summary.calls, summary.anomalies, summary.orphans) == (1, 1, 0, 0)
    assert (await fleet.row(instance_id))["server_state"] == "running"
    assert instance_id not in await fleet.reconciler_work()

    await fleet.sim.faults.kill_server(server_id)
    summary = await fleet.run()
    assert (summary.anomalies, summary.repairs, summary.calls) == (1, 1, 1)
    [alert] = await fleet.alerts("server_state")
    assert instance_id in alert and "off" in alert
    row = await fleet.row(instance_id)
    assert (row["status"], row["desired_state"]) == ("suspended", "active")
    assert (row["server_state"], row["server_state_alerted"]) == ("off", "off")
    # The reconciler's resume path takes it from here (power on, SSH, verify).
    assert instance_id in await fleet.reconciler_work() and fleet.wakes == [1]

    # Before the reconciler gets to it, the next check neither alerts nor acts again.
    summary = await fleet.run()
    assert summary.alerts == 0 and len(await fleet.alerts("server_state")) == 1

    # Resumed (the reconciler powers it on and marks it active): fine again, said once.
    await fleet.hetzner.wait_action(await fleet.hetzner.power_on(server_id), expected_s=0.2)
    await InstanceRecords(fleet.db, fleet.clock).set_status(instance_id, Status.ACTIVE)
    await fleet.run()
    await fleet.run()
    assert len(await fleet.alerts("server_state")) == 1
    [ok] = await fleet.alerts("server_state_ok")
    assert instance_id in ok and "running" in ok
    row = await fleet.row(instance_id)
    assert (row["server_state"], row["server_state_alerted"]) == ("running", None)


async def test_a_server_running_while_suspended_is_shut_down_again(fleet: Fleet) -> None:
    instance_id, _ = await fleet.instance("suspended")
    summary = await fleet.run()
    assert (summary.anomalies, summary.repairs) == (1, 1)
    [alert] = await fleet.alerts("server_state")
    assert "running while the instance is suspended" in alert
    row = await fleet.row(instance_id)
    assert (row["status"], row["desired_state"]) == ("active", "suspended")
    assert instance_id in await fleet.reconciler_work()  # its suspend shuts it down


async def test_a_missing_server_fails_the_instance_with_one_alert(fleet: Fleet) -> None:
    active_id, active_server = await fleet.instance()
    suspended_id, suspended_server = await fleet.instance("suspended")
    await fleet.hetzner.wait_action(await fleet.hetzner.power_off(suspended_server), expected_s=0.2)
    for server_id in (active_server, suspended_server):
        await fleet.sim.state.delete_server(fleet.sim.state.server(server_id))

    summary = await fleet.run()
    # One list call, and one lookup each to be sure they are gone, not skipped by a page.
    assert (summary.listed, summary.calls, summary.anomalies, summary.orphans) == (0, 3, 2, 0)
    alerts = await fleet.alerts("server_state")
    assert len(alerts) == 2
    assert any(active_id in a and "gone from Hetzner" in a and "/retry" in a for a in alerts)
    assert any(suspended_id in a and "nothing left to resume" in a for a in alerts)
    row = await fleet.row(active_id)
    assert (row["status"], row["server_state"], row["server_state_alerted"]) == (
        "failed",
        "missing",
        "missing",
    )
    assert row["last_error"] == "its server is gone from Hetzner"
    # Failed waits for an admin's /retry or /reprovision; suspended has nothing to do.
    assert (await fleet.row(suspended_id))["status"] == "suspended"
    assert await fleet.reconciler_work() == set()

    await fleet.run()
    assert len(await fleet.alerts("server_state")) == 2


async def test_an_orphan_is_alerted_once_and_never_deleted(fleet: Fleet) -> None:
    managed = {MANAGED_LABEL: MANAGED_VALUE}
    stray = await fleet.server("oc-zzzzzzzzzzzz", managed | {"instance": "inst_zzzzzzzzzzzz"})
    destroyed_id, left_behind = await fleet.instance("destroyed")
    other = await fleet.server("someone-elses", {"team": "other"})  # not ours at all
    build = await fleet.server(
        "oc-image-0123456789ab", managed | {PURPOSE_LABEL: GOLDEN_PURPOSE}, wait=False
    )

    summary = await fleet.run()
    assert (summary.listed, summary.orphans, summary.anomalies) == (3, 2, 0)
    alerts = await fleet.alerts("server_orphan")
    assert len(alerts) == 2
    assert any("oc-zzzzzzzzzzzz" in a and "inst_zzzzzzzzzzzz" in a for a in alerts)
    assert any(f"id {left_behind}" in a and destroyed_id in a for a in alerts)
    assert all("Not deleted" in a for a in alerts)

    for _ in range(3):
        await fleet.run()
    assert len(await fleet.alerts("server_orphan")) == 2
    assert {stray, left_behind, other, build} <= set(fleet.sim.state.servers)  # all kept
    rows = await fleet.db.fetch_all("SELECT server_id FROM orphan_servers ORDER BY server_id")
    assert {r["server_id"] for r in rows} == {stray, left_behind, build}

    # An image build's own server is not an orphan, unless it outlives any build.
    fleet.clock.advance(timedelta(hours=3))
    summary = await fleet.run()
    assert summary.orphans == 3
    await fleet.run()
    [*_, leftover] = await fleet.alerts("server_orphan")
    assert len(await fleet.alerts("server_orphan")) == 3
    assert "oc-image-0123456789ab" in leftover and "Image build server" in leftover

    # A server that goes away is forgotten; the rest stay remembered.
    await fleet.sim.state.delete_server(fleet.sim.state.server(stray))
    summary = await fleet.run()
    assert summary.orphans == 2 and len(await fleet.alerts("server_orphan")) == 3
    rows = await fleet.db.fetch_all("SELECT server_id FROM orphan_servers")
    assert {r["server_id"] for r in rows} == {left_behind, build}


async def test_a_muted_instance_is_recorded_but_neither_alerted_nor_repaired(
    fleet: Fleet,
) -> None:
    instance_id, server_id = await fleet.instance()
    until = fleet.clock.now() + timedelta(hours=1)
    async with fleet.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET muted_until = ? WHERE id = ?", (to_iso(until), instance_id)
        )
    await fleet.sim.faults.kill_server(server_id)

    summary = await fleet.run()
    assert (summary.anomalies, summary.alerts, summary.repairs) == (1, 0, 0)
    row = await fleet.row(instance_id)
    assert (row["status"], row["server_state"], row["server_state_alerted"]) == (
        "active",
        "off",
        None,
    )
    assert fleet.wakes == []

    fleet.clock.advance(timedelta(hours=1))  # the mute ends: still off, now said and acted on
    summary = await fleet.run()
    assert (summary.alerts, summary.repairs) == (1, 1)
    assert (await fleet.row(instance_id))["status"] == "suspended"


async def test_instances_on_their_way_somewhere_are_not_false_alarmed(fleet: Fleet) -> None:
    # Rebooting: an operation in flight while the server is down.
    rebooting, rebooting_server = await fleet.instance()
    await fleet.core.admin.queue_operation(rebooting, OperationKind.REBOOT, ACTOR_API)
    # Being suspended: desired suspended, the reconciler mid-shutdown.
    suspending, suspending_server = await fleet.instance()
    await fleet.core.admin.suspend(suspending, "abuse report", ACTOR_API)
    for server_id in (rebooting_server, suspending_server):
        await fleet.sim.faults.kill_server(server_id)
    # Still being provisioned: no server yet.
    provisioning = await fleet.core.admin.provision("p@example.com", None, None, ACTOR_API)
    # Stopping, as a server does on its way off: normal while it lasts.
    stopping, stopping_server = await fleet.instance()
    fleet.sim.state.server(stopping_server).status = "stopping"
    # A failed instance keeps its server for debugging, whatever its state.
    failed, failed_server = await fleet.instance("failed", "active")
    await fleet.sim.faults.kill_server(failed_server)

    summary = await fleet.run()
    assert (summary.anomalies, summary.alerts, summary.repairs, summary.orphans) == (0, 0, 0, 0)
    assert summary.listed == 4 and summary.calls == 1
    assert (await fleet.row(rebooting))["status"] == "active"
    assert (await fleet.row(provisioning.instance_id))["server_state"] is None
    assert (await fleet.row(failed))["server_state"] == "off"
    assert (await fleet.row(stopping))["server_state"] == "stopping"


async def test_a_fleet_of_120_is_listed_in_three_calls(fleet: Fleet) -> None:
    fleet.key_id = await fleet.hetzner.ensure_ssh_key("backend", PUBLIC_KEY)
    created = await asyncio.gather(*(fleet.instance(wait=False) for _ in range(120)))
    summary = await fleet.run()
    assert (summary.listed, summary.calls, summary.orphans) == (120, 3, 0)
    assert summary.anomalies == 0
    states = await fleet.db.fetch_all("SELECT server_state FROM instances")
    assert len(states) == len(created) and all(r["server_state"] for r in states)


async def test_a_list_missing_most_of_the_fleet_is_not_believed(fleet: Fleet) -> None:
    fleet.key_id = await fleet.hetzner.ensure_ssh_key("backend", PUBLIC_KEY)
    ids = [i for i, _ in await asyncio.gather(*(fleet.instance(wait=False) for _ in range(11)))]
    # As if the token were another project's: none of our servers in the list.
    fleet.check = VpsStatusCheck(fleet.db, fleet.clock, fleet.hetzner, selector="team=other")
    summary = await fleet.run()
    assert (summary.listed, summary.calls, summary.anomalies, summary.alerts) == (0, 1, 0, 0)
    assert {(await fleet.row(i))["status"] for i in ids} == {"active"}
