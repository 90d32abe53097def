"""The Hetzner facade against the simulator: real hcloud, one budget, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncssh
import pytest

from core.clock import SystemClock
from provisioner.budget import BudgetedSession, RequestBudget
from provisioner.hetzner import ErrorKind, Hetzner, HetznerError
from sim.hetzner import HetznerSim

TOKEN = "test-token"


PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZlbWFsZS1rZXktZm9yLXRlc3RzLW9ubHktMDAwMDAw backend"
)


@pytest.fixture
async def sim() -> AsyncIterator[HetznerSim]:
    hetzner = HetznerSim(token=TOKEN, time_scale=0.002, server_limit=5)
    await hetzner.start()
    yield hetzner
    await hetzner.stop()


@pytest.fixture
async def client(sim: HetznerSim) -> AsyncIterator[Hetzner]:
    facade = Hetzner(
        TOKEN, sim.url, budget=RequestBudget(), clock=SystemClock(), retry_backoff=lambda n: 0.01
    )
    yield facade
    facade.close()


def session(client: Hetzner) -> BudgetedSession:
    found = client._client._client._session
    assert isinstance(found, BudgetedSession)
    return found


async def create(client: Hetzner, name: str, location: str = "fsn1") -> int:
    key = await client.ensure_ssh_key("backend", PUBLIC_KEY)
    server, actions = await client.create_server(
        name=name, server_type="cax11", image="ubuntu-24.04", location=location,
        ssh_key_id=key, user_data="#cloud-config\n", labels={"app": "openclaw", "inst": name},
    )  # fmt: skip
    for action in actions:
        await client.wait_action(action, expected_s=0.1)
    return server.id


async def test_project_resources_are_ensured_once(client: Hetzner, sim: HetznerSim) -> None:
    first = await client.ensure_ssh_key("backend", PUBLIC_KEY)
    again = await client.ensure_ssh_key("backend", PUBLIC_KEY)
    assert first == again and len(sim.state.ssh_keys) == 1
    # The backend's key changed (a new SSH_PRIVATE_KEY_PATH): the old one of that name is
    # not reused, or new servers would only let the old key in.
    new_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh")
    rotated = await client.ensure_ssh_key("backend", new_key.decode().strip())
    assert rotated != first and len(sim.state.ssh_keys) == 2
    assert await client.ensure_ssh_key("backend", new_key.decode().strip()) == rotated
    rules = [{"protocol": "tcp", "port": "22", "source_ips": ["127.0.0.1/32"]}]
    fw = await client.ensure_firewall("openclaw", rules, "app=openclaw")
    assert await client.ensure_firewall("openclaw", rules, "app=openclaw") == fw
    assert len(sim.state.firewalls) == 1


async def test_server_lifecycle(client: Hetzner) -> None:
    server_id = await create(client, "oc-aaaaaaaaaaaa")
    found = await client.server_by_name("oc-aaaaaaaaaaaa")
    assert found is not None and found.id == server_id and found.ip and found.ip.startswith("127.")
    assert found.location == "fsn1" and found.status == "running"
    assert [s.id for s in await client.servers("app=openclaw")] == [server_id]
    await client.wait_action(await client.power_off(server_id), expected_s=0.01)
    assert (await client.server(server_id)).status == "off"  # type: ignore[union-attr]
    await client.wait_action(await client.power_on(server_id), expected_s=0.01)
    image_id, action = await client.snapshot(server_id, "before destroy", {"inst": "aaaa"})
    await client.wait_action(action, expected_s=0.1)
    assert [s.id for s in await client.snapshots("inst=aaaa")] == [image_id]
    await client.wait_action(await client.delete_server(server_id), expected_s=0.01)
    assert await client.server(server_id) is None
    await client.delete_image(image_id)
    await client.delete_image(image_id)  # already gone: fine
    assert await client.snapshots("inst=aaaa") == []
    assert await client.monthly_price_eur("cax11", "fsn1") is not None


async def test_errors_say_what_to_do(client: Hetzner, sim: HetznerSim) -> None:
    sim.faults.out_of_capacity("fsn1")
    with pytest.raises(HetznerError) as capacity:
        await create(client, "oc-bbbbbbbbbbbb")
    assert capacity.value.kind is ErrorKind.CAPACITY
    assert await create(client, "oc-bbbbbbbbbbbb", location="nbg1")
    for n in range(4):
        await create(client, f"oc-cccccccccc{n:02d}", location="nbg1")
    with pytest.raises(HetznerError) as limit:
        await create(client, "oc-dddddddddddd", location="nbg1")
    assert limit.value.kind is ErrorKind.PROJECT_LIMIT
    with pytest.raises(HetznerError) as invalid:
        await create(client, "Not_A_Valid_Name", location="nbg1")
    assert invalid.value.kind is ErrorKind.PERMANENT and invalid.value.code == "invalid_input"
    assert TOKEN not in str(invalid.value)


async def test_a_scripted_429_is_ridden_out(client: Hetzner, sim: HetznerSim) -> None:
    sim.faults.fail_next("GET", "/ssh_keys", "rate_limit_exceeded", status=429, times=2)
    assert await client.ensure_ssh_key("backend", PUBLIC_KEY)
    assert session(client).rate_limited == 2


async def test_a_failed_action_raises(client: Hetzner, sim: HetznerSim) -> None:
    server_id = await create(client, "oc-eeeeeeeeeeee")
    sim.faults.fail_next_action("stop_server")
    with pytest.raises(HetznerError):
        await client.wait_action(await client.power_off(server_id), expected_s=0.01)


async def test_the_budget_keeps_a_burst_under_the_limit(sim: HetznerSim) -> None:
    # A bucket of 20 refilling at 100/s (at this time scale), and a budget that believes
    # 3600 and 1/s until the headers tell it otherwise: 50 concurrent reads are paced
    # by what Hetzner says is left, and none is refused.
    sim.set_rate_limit(20, 100 * 0.002)
    client = Hetzner(TOKEN, sim.url, budget=RequestBudget(), clock=SystemClock())
    try:
        await asyncio.gather(*(client.servers("app=openclaw") for _ in range(50)))
    finally:
        client.close()
    assert session(client).rate_limited == 0
    assert client.budget.requests == 50
    assert client.budget.capacity == 20 and client.budget.refill_per_s > 1
