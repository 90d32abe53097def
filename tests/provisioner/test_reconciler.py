"""The reconciler against simulated Hetzner and customer servers, with real clients."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp

import provisioner.gateway as gateway
from core.models import ACTOR_API, OperationKind, Plan
from provisioner.cloud_init import new_host_key
from provisioner.config import MANAGED_SELECTOR
from provisioner.provisioning import ensure_project
from provisioner.transitions import delete_expired_snapshots
from sim.hetzner import ServerListener
from sim.hetzner_model import SimServer
from sim.vps import VpsSim
from tests.provisioner.conftest import World, needs_root

pytestmark = needs_root


async def test_happy_path_to_a_verified_hardened_gateway(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert (instance["status"], instance["step"], instance["last_error"]) == ("active", None, None)
    [server] = world.servers()
    assert server.name == "oc-" + instance_id.removeprefix("inst_")
    assert server.labels["managed-by"] == "openclaw-hosted"
    assert instance["server_ip"] == server.ip and instance["location"] == "fsn1"
    assert instance["server_monthly_price_eur"] is not None
    assert instance["ssh_host_key"].startswith("ssh-ed25519 ")
    machine = world.vps.vps(server.id)
    # sshd listens where the firewall lets the backend in (SSH_PORT, 2222 here).
    port_conf = machine.sandbox.read("/etc/ssh/sshd_config.d/00-openclaw-port.conf") or ""
    assert port_conf.strip() == "Port 2222"
    # The install script fails unless the audit is clean (tests/provisioner/test_install.py).
    assert machine.commands.matching(r"openclaw security audit --json")
    assert "install exited 0" in instance["provision_log"]
    async with aiohttp.ClientSession() as http:
        assert await gateway.ready(http, server.ip, 18789)
        assert await gateway.password_required(http, server.ip, 18789)
    [setup] = await world.notifications("setup")
    assert setup["customer_id"] == instance["customer_id"] and "18789" in setup["ref"]
    # The password lives only on the server: not in the database, logs or messages.
    env = machine.sandbox.read("/home/openclaw/.openclaw/.env") or ""
    password = env.split("OPENCLAW_GATEWAY_PASSWORD=", 1)[1].strip().strip("'\"")
    assert len(password) >= 32
    dump = await world.core.db.fetch_all("SELECT * FROM instances")
    everything = repr([dict(r) for r in dump]) + repr(await world.notifications("setup"))
    assert password not in everything
    assert instance["password_hash"] and password not in instance["provision_log"]


async def test_location_fallback(world: World) -> None:
    world.hetzner_sim.faults.out_of_capacity("fsn1")
    instance_id = await world.provision()
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert (instance["status"], instance["location"]) == ("active", "nbg1")
    assert "fsn1: resource_unavailable" in instance["provision_log"]


async def test_project_limit_waits_and_alerts_instead_of_failing(world: World) -> None:
    world.hetzner_sim.faults.fail_next(
        "POST", "/servers", "resource_limit_exceeded", status=403, times=1
    )
    instance_id = await world.provision()
    await world.reconciler.reconcile(instance_id)
    instance = await world.instance(instance_id)
    assert instance["status"] == "provisioning" and instance["next_attempt_at"]
    assert await world.notifications("instance_waiting")
    await world.core.db.fetch_all("SELECT 1")
    async with world.core.db.transaction() as conn:  # the operators raised the limit
        await conn.execute("UPDATE instances SET next_attempt_at = NULL")
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "active"


async def test_a_429_storm_is_ridden_out(world: World) -> None:
    world.hetzner_sim.faults.fail_next("POST", "/servers", "rate_limit_exceeded", status=429,
                                      times=3)  # fmt: skip
    instance_id = await world.provision()
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "active"
    assert len(world.servers()) == 1


async def test_hetzner_failing_after_retries_fails_and_alerts(world: World) -> None:
    world.hetzner_sim.faults.fail_next("POST", "/servers", "server_error", status=500, times=10)
    instance_id = await world.provision()
    for _ in range(5):
        await world.reconciler.reconcile(instance_id)
        await asyncio.sleep(0.05)
    instance = await world.instance(instance_id)
    assert instance["status"] == "failed" and instance["step"] == "create"
    [alert] = await world.notifications("instance_failed")
    assert instance_id in alert["body"] and "create" in alert["body"]


class FailNpmOnNewServers(ServerListener):
    def __init__(self, vps: VpsSim) -> None:
        self.vps = vps

    def server_created(self, server: SimServer) -> None:
        self.vps.fail_command(server.id, r"npm install -g", times=1, exit_status=1)


async def test_install_failing_fails_and_keeps_the_server(world: World) -> None:
    world.hetzner_sim.add_listener(FailNpmOnNewServers(world.vps))
    instance_id = await world.provision()
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert (instance["status"], instance["step"]) == ("failed", "install")
    assert len(world.servers()) == 1  # kept for debugging
    assert await world.notifications("instance_failed")
    # An admin fixes the cause and retries: it converges.
    await world.core.admin.queue_operation(instance_id, OperationKind.RETRY, ACTOR_API)
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "active"


async def test_verify_failing_installs_once_more_then_fails(world: World) -> None:
    # The gateway is ready on the server (the install script checks), but the outside
    # cannot reach it: the firewall lost its gateway rule.
    await ensure_project(world.infra)
    ssh_only = [rule for rule in world.infra.config.firewall_rules() if rule["port"] == "2222"]
    await world.infra.hetzner.ensure_firewall("openclaw-hosted", ssh_only, MANAGED_SELECTOR)
    world.infra.config = dataclasses.replace(world.infra.config, start_grace_s=0.3)
    instance_id = await world.provision()
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert (instance["status"], instance["step"]) == ("failed", "verify")
    assert instance["reinstalls"] == 1
    assert instance["provision_log"].count("install exited 0") == 2


async def test_a_host_key_mismatch_never_connects(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.reconcile(instance_id)  # runs to active
    async with world.core.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET status = 'provisioning', step = 'boot', ssh_host_key = ? "
            "WHERE id = ?",
            (new_host_key().public_openssh, instance_id),
        )
    before = len(world.vps.vps((await world.instance(instance_id))["server_ip"]).commands.ssh())
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert instance["status"] == "failed" and "host key" in instance["last_error"]
    after = len(world.vps.vps(instance["server_ip"]).commands.ssh())
    assert after == before  # not a single command ran


async def test_suspend_resume_destroy_and_return_from_snapshot(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    await world.core.admin.suspend(instance_id, "testing", ACTOR_API)
    await world.reconciler.settle()
    [server] = world.servers()
    assert (await world.instance(instance_id))["status"] == "suspended"
    assert server.status == "off"
    await world.core.admin.resume(instance_id, ACTOR_API)
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "active" and server.status == "running"
    await world.core.admin.destroy(instance_id, ACTOR_API)
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert instance["status"] == "destroyed" and world.servers() == []
    [snapshot] = [i for i in world.hetzner_sim.state.images.values() if i.type == "snapshot"]
    assert snapshot.labels["instance"] == instance_id and snapshot.labels["kind"] == "final"
    assert snapshot.labels["delete-after"]
    # The customer comes back: a new instance, restored from that snapshot.
    async with world.core.db.transaction() as conn:
        new_id = await world.core.lifecycle.create_instance(
            conn, instance["customer_id"], Plan.MANUAL, ACTOR_API
        )
    await world.reconciler.settle()
    assert (await world.instance(new_id))["status"] == "active"
    [server] = world.servers()
    assert server.image_id == snapshot.id


async def test_every_operation_runs_once(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    for kind in (OperationKind.RESTART_GATEWAY, OperationKind.REBOOT, OperationKind.SNAPSHOT,
                 OperationKind.REPROVISION):  # fmt: skip
        await world.core.admin.queue_operation(instance_id, kind, ACTOR_API)
        await world.reconciler.settle()
    assert await world.operations(instance_id) == [
        ("restart_gateway", "done"), ("reboot", "done"), ("snapshot", "done"),
        ("reprovision", "done"),
    ]  # fmt: skip
    instance = await world.instance(instance_id)
    assert instance["status"] == "active"
    assert len(await world.notifications("setup")) == 2  # a new setup message after rebuild
    assert len(world.servers()) == 1


async def test_max_servers_waits_and_alerts(world: World) -> None:
    world.infra.config = dataclasses.replace(world.infra.config, max_servers=1)
    first, second = await world.provision(), await world.provision("bo@example.com")
    await world.reconciler.settle()
    assert (await world.instance(first))["status"] == "active"
    waiting = await world.instance(second)
    assert waiting["status"] == "provisioning" and "MAX_SERVERS" in waiting["last_error"]
    assert len(world.servers()) == 1
    [alert] = await world.notifications("instance_waiting")
    assert second in alert["body"]


async def test_expired_snapshots_are_deleted(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    await world.core.admin.destroy(instance_id, ACTOR_API)
    await world.reconciler.settle()
    assert await delete_expired_snapshots(world.infra) == 0  # kept for 30 days
    [snapshot] = [i for i in world.hetzner_sim.state.images.values() if i.type == "snapshot"]
    snapshot.labels["delete-after"] = "2020-01-01"  # time passes
    assert await delete_expired_snapshots(world.infra) == 1
    assert not [i for i in world.hetzner_sim.state.images.values() if i.type == "snapshot"]


async def test_destroy_finds_a_server_whose_id_was_never_recorded(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    async with world.core.db.transaction() as conn:  # as if a crash lost the id
        await conn.execute(
            "UPDATE instances SET hetzner_server_id = NULL WHERE id = ?", (instance_id,)
        )
    await world.core.admin.destroy(instance_id, ACTOR_API)
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "destroyed"
    assert world.servers() == []


async def test_suspended_while_provisioning_resumes_provisioning(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    async with world.core.db.transaction() as conn:  # caught mid-install, never active
        await conn.execute(
            "UPDATE instances SET status = 'provisioning', step = 'install', "
            "setup_sent_at = NULL WHERE id = ?",
            (instance_id,),
        )
    await world.core.admin.suspend(instance_id, "payment check", ACTOR_API)
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert (instance["status"], instance["step"]) == ("suspended", "install")
    assert world.servers()[0].status == "off"
    await world.core.admin.resume(instance_id, ACTOR_API)
    await world.reconciler.settle()
    assert (await world.instance(instance_id))["status"] == "active"
    assert len(await world.notifications("setup")) == 2  # the provisioning completed again
