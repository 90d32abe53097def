"""Contract tests: the real `hcloud` client (synchronous, so in a thread) against
the Hetzner simulator running on the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncssh
import pytest
from hcloud import APIException, Client
from hcloud.actions import BoundAction
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer

from sim.hetzner import HetznerSim, ServerListener
from sim.hetzner_model import SimImage, SimServer

TOKEN = "test-token"
# 60 s of simulated create-to-SSH time become 0.12 s.
TIME_SCALE = 0.002
SimFactory = Callable[..., Awaitable[HetznerSim]]


class Recorder(ServerListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.booted = asyncio.Event()

    def server_created(self, server: SimServer) -> None:
        self.events.append(("created", server.id))

    async def server_booted(self, server: SimServer) -> None:
        self.events.append(("booted", server.id))
        self.booted.set()

    def server_powered_off(self, server: SimServer) -> None:
        self.events.append(("powered_off", server.id))

    def server_rebuilt(self, server: SimServer) -> None:
        self.events.append(("rebuilt", server.id))

    def server_deleted(self, server: SimServer) -> None:
        self.events.append(("deleted", server.id))

    def snapshot_created(self, server: SimServer, image: SimImage) -> None:
        self.events.append(("snapshot", image.id))


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    sims: list[HetznerSim] = []

    async def make(**kwargs: Any) -> HetznerSim:
        sim = HetznerSim(token=TOKEN, time_scale=TIME_SCALE, **kwargs)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: SimFactory) -> HetznerSim:
    return await make_sim(server_limit=30)


def hcloud_client(sim: HetznerSim) -> Client:
    client = Client(token=TOKEN, api_endpoint=sim.url, poll_interval=0.01)
    # hcloud's own retry backoff (1 s doubling to 60 s) is private; shrink it for tests.
    client._client._retry_interval_func = lambda retries: 0.01
    return client


@pytest.fixture
def client(sim: HetznerSim) -> Any:
    client = hcloud_client(sim)
    yield client
    client._client._session.close()


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def wait_action(client: Client, action: BoundAction, until: float = 10.0) -> Any:
    """Poll like the product does (hcloud's wait_until_finished sleeps a thread)."""
    deadline = asyncio.get_running_loop().time() + until
    while True:
        current = await call(client.actions.get_by_id, action.id)
        if current.status != "running":
            return current
        assert asyncio.get_running_loop().time() < deadline, f"action {action.id} hangs"
        await asyncio.sleep(0.01)


async def api_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> APIException:
    with pytest.raises(APIException) as info:
        await call(fn, *args, **kwargs)
    return info.value


async def control(sim: HetznerSim, path: str, body: dict[str, Any] | None = None) -> int:
    """POST to the simulator's token-free control routes."""
    async with aiohttp.ClientSession() as http, http.post(sim.base_url + path, json=body) as r:
        return r.status


async def rejected(attempt: Awaitable[Any]) -> APIException:
    with pytest.raises(APIException) as info:
        await attempt
    return info.value


def ed25519_public_key() -> str:
    return str(asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()).strip()


async def create(client: Client, name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("image", Image(name="ubuntu-24.04"))
    return await call(client.servers.create, name, server_type=ServerType(name="cax11"), **kwargs)


async def test_server_lifecycle_snapshot_and_restore(sim: HetznerSim, client: Client) -> None:
    recorder = Recorder()
    sim.add_listener(recorder)
    public_key = ed25519_public_key()
    key = await call(client.ssh_keys.create, name="ops", public_key=public_key)
    rule = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["127.0.0.0/8"])
    firewall = (await call(client.firewalls.create, name="gateways", rules=[rule])).firewall
    user_data = "#cloud-config\nssh_keys:\n  ed25519_public: x\n"

    created = await create(
        client,
        "oc-a1b2c3d4e5f6",
        location=Location(name="fsn1"),
        ssh_keys=[key],
        firewalls=[firewall],
        user_data=user_data,
        labels={"app": "openclaw", "instance": "inst_a1b2c3d4e5f6"},
    )
    server = created.server
    assert server.status == "initializing"
    assert server.public_net.ipv4.ip.startswith("127.1.")
    assert server.public_net.primary_ipv4.id is not None
    assert created.root_password is None  # an SSH key was given
    assert created.action.command == "create_server"
    assert [a.command for a in created.next_actions] == ["start_server"]
    assert server.server_type.locations[0].available is not None
    assert server.location.name == "fsn1"
    assert [fw.firewall.id for fw in server.public_net.firewalls] == [firewall.id]

    assert (await wait_action(client, created.action)).status == "success"
    assert (await wait_action(client, created.next_actions[0])).status == "success"
    server = await call(client.servers.get_by_id, server.id)
    assert server.status == "running"
    await asyncio.wait_for(recorder.booted.wait(), 10)

    # What the VPS simulator reads through the hook.
    state_server = sim.state.server(server.id)
    assert state_server.booted and state_server.user_data == user_data
    assert state_server.ssh_public_keys == [public_key]
    assert sim.state.inbound_allowed(state_server, "127.0.0.9", "tcp", 22)
    assert not sim.state.inbound_allowed(state_server, "127.0.0.9", "tcp", 18789)
    assert not sim.state.inbound_allowed(state_server, "10.0.0.1", "tcp", 22)

    off = await wait_action(client, await call(client.servers.power_off, server))
    assert off.status == "success" and off.progress == 100
    assert (await call(client.servers.get_by_id, server.id)).status == "off"
    await wait_action(client, await call(client.servers.power_on, server))
    assert (await call(client.servers.get_by_id, server.id)).status == "running"

    snap = await call(
        client.servers.create_image, server, description="backup", labels={"instance": "a1b2"}
    )
    assert snap.image.status == "creating" and snap.image.type == "snapshot"
    assert (await wait_action(client, snap.action)).status == "success"
    found = await call(client.images.get_all, type="snapshot", label_selector="instance=a1b2")
    assert [i.id for i in found] == [snap.image.id]
    assert found[0].status == "available"
    assert found[0].created_from.id == server.id

    restored = await create(client, "oc-restored", image=Image(id=snap.image.id))
    await wait_action(client, restored.next_actions[0])
    restored_server = await call(client.servers.get_by_id, restored.server.id)
    assert restored_server.status == "running"
    assert restored_server.image.id == snap.image.id
    assert restored_server.public_net.ipv4.ip != server.public_net.ipv4.ip

    for doomed in (server, restored_server):
        assert (await wait_action(client, await call(client.servers.delete, doomed))).status == (
            "success"
        )
    error = await api_error(client.servers.get_by_id, server.id)
    assert error.code == "not_found"
    await call(client.images.delete, snap.image)
    assert await call(client.images.get_all, type="snapshot") == []
    kinds = [kind for kind, _ in recorder.events]
    assert kinds.count("created") == 2 and kinds.count("deleted") == 2
    assert "powered_off" in kinds and "snapshot" in kinds


async def test_list_across_pages_with_label_selector(sim: HetznerSim, client: Client) -> None:
    for i in range(7):
        await create(client, f"web-{i}", labels={"role": "gateway", "n": str(i)})
    for i in range(3):
        await create(client, f"db-{i}", labels={"role": "db"})

    page = await call(client.servers.get_list, label_selector="role=gateway", per_page=3)
    pagination = page.meta.pagination
    assert (pagination.page, pagination.per_page, pagination.last_page) == (1, 3, 3)
    assert (pagination.previous_page, pagination.next_page) == (None, 2)
    assert pagination.total_entries == 7
    names = []
    for number in (1, 2, 3):
        result = await call(
            client.servers.get_list, label_selector="role=gateway", page=number, per_page=3
        )
        names += [s.name for s in result.servers]
    assert names == [f"web-{i}" for i in range(7)]
    assert result.meta.pagination.next_page is None

    everything = await call(client.servers.get_all, label_selector="role!=db")
    assert len(everything) == 7
    assert len(await call(client.servers.get_all, label_selector="role in (db,x),!n")) == 3
    assert (await call(client.servers.get_all, name="db-1"))[0].labels == {"role": "db"}
    capped = await call(client.servers.get_list, per_page=500)
    assert capped.meta.pagination.per_page == 50


async def test_scripted_429_is_retried_by_hcloud(sim: HetznerSim, client: Client) -> None:
    sim.faults.fail_next("GET", "/servers", "rate_limit_exceeded", times=2)
    assert await call(client.servers.get_all) == []
    assert sim.faults.pending_route_failures == 0


async def test_locked_server_answers_423(sim: HetznerSim, client: Client) -> None:
    created = await create(client, "busy")
    error = await api_error(client.servers.power_off, created.server)
    assert error.code == "locked"
    await wait_action(client, created.next_actions[0])
    action = await call(client.servers.reboot, created.server)
    assert (await api_error(client.servers.shutdown, created.server)).code == "locked"
    assert (await wait_action(client, action)).status == "success"


async def test_location_out_of_capacity_answers_412(sim: HetznerSim, client: Client) -> None:
    status = await control(sim, "/_sim/faults/capacity", {"location": "fsn1", "available": False})
    assert status == 200
    error = await rejected(create(client, "full", location=Location(name="fsn1")))
    assert error.code == "resource_unavailable"
    fallback = await create(client, "full", location=Location(name="nbg1"))
    assert fallback.server.location.name == "nbg1"
    # Without a location the API picks one with capacity for the type.
    assert (await create(client, "anywhere")).server.location.name != "fsn1"


async def test_project_server_limit_answers_403(make_sim: SimFactory) -> None:
    sim = await make_sim(server_limit=2)
    client = hcloud_client(sim)
    await create(client, "one")
    await create(client, "two")
    assert (await rejected(create(client, "three"))).code == "resource_limit_exceeded"
    client._client._session.close()


async def test_validation_like_the_real_api(sim: HetznerSim, client: Client) -> None:
    bad_name = await rejected(create(client, "inst_a1b2c3d4e5f6"))
    assert bad_name.code == "invalid_input"
    assert bad_name.details["fields"][0]["name"] == "name"
    await create(client, "oc-taken")
    assert (await rejected(create(client, "oc-taken"))).code == "uniqueness_error"
    too_big = "#cloud-config\n" + "x" * (32 * 1024)
    assert (await rejected(create(client, "oc-big", user_data=too_big))).code == "invalid_input"
    bad_label = await rejected(create(client, "oc-label", labels={"bad key": "v"}))
    assert bad_label.code == "invalid_input"
    us = await rejected(create(client, "oc-us", location=Location(name="ash")))
    assert us.code == "invalid_input"  # CAX types do not exist in the US
    bad_selector = await api_error(client.servers.get_all, label_selector="a=b=c")
    assert bad_selector.code == "invalid_input"
    bad_rule = FirewallRule(direction="in", protocol="tcp", port="70000", source_ips=["0.0.0.0/0"])
    assert (await api_error(client.firewalls.create, "fw", rules=[bad_rule])).code == (
        "invalid_input"
    )

    public_key = ed25519_public_key()
    key = await call(client.ssh_keys.create, name="ops", public_key=public_key)
    md5 = asyncssh.import_public_key(public_key).get_fingerprint("md5")
    assert key.fingerprint == md5.removeprefix("MD5:")
    again = await api_error(client.ssh_keys.create, name="ops", public_key=ed25519_public_key())
    assert again.code == "uniqueness_error"
    garbage = await api_error(client.ssh_keys.create, name="x", public_key="ssh-ed25519 AAAA")
    assert garbage.code == "invalid_input"


async def test_catalog_server_types_and_locations(client: Client) -> None:
    cax11 = await call(client.server_types.get_by_name, "cax11")
    assert cax11.architecture == "arm" and cax11.cores == 2
    names = {loc.location.name for loc in cax11.locations}
    assert names == {"fsn1", "nbg1", "hel1"}
    assert all(loc.available and loc.recommended for loc in cax11.locations)
    assert {p["location"] for p in cax11.prices} == names
    assert float(cax11.prices[0]["price_monthly"]["net"]) > 0
    locations = {loc.name for loc in await call(client.locations.get_all)}
    assert {"fsn1", "nbg1", "hel1", "ash", "hil"} <= locations


async def test_rate_limit_headers_401_and_bucket(sim: HetznerSim) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.url}/servers", headers=auth) as first:
            assert first.status == 200
            assert first.headers["RateLimit-Limit"] == "3600"
            remaining = int(first.headers["RateLimit-Remaining"])
            assert remaining < 3600
            assert int(first.headers["RateLimit-Reset"]) > 0
        async with http.get(f"{sim.url}/servers", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
            assert "RateLimit-Remaining" in r.headers

        sim.set_rate_limit(capacity=2, refill_per_s=0.0)  # no refill: no timing involved
        statuses = []
        for _ in range(3):
            async with http.get(f"{sim.url}/servers", headers=auth) as r:
                statuses.append(r.status)
                body = await r.json()
        assert statuses == [200, 200, 429]
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert r.headers["RateLimit-Remaining"] == "0"


async def test_faults_route_action_and_death(sim: HetznerSim, client: Client) -> None:
    recorder = Recorder()
    sim.add_listener(recorder)
    fault = {"method": "POST", "path": "/servers", "code": "unavailable", "times": 1}
    assert await control(sim, "/_sim/faults/route", fault) == 200
    error = await rejected(create(client, "oc-flaky"))  # hcloud does not retry 503
    assert error.code == "unavailable"
    created = await create(client, "oc-flaky")
    await wait_action(client, created.next_actions[0])
    await asyncio.wait_for(recorder.booted.wait(), 10)

    sim.faults.fail_next_action("stop_server")
    failed = await wait_action(client, await call(client.servers.power_off, created.server))
    assert failed.status == "error" and failed.error is not None
    assert failed.error["code"] == "action_failed"
    assert (await call(client.servers.get_by_id, created.server.id)).status == "running"

    sim.faults.add_latency(0.01, "GET", "/servers/*")  # wall time; only proves it passes
    assert await control(sim, f"/_sim/servers/{created.server.id}/kill") == 200
    assert (await call(client.servers.get_by_id, created.server.id)).status == "off"
    assert ("powered_off", created.server.id) in recorder.events
    sim.faults.clear()


async def test_firewall_label_selector_rules_and_actions(sim: HetznerSim, client: Client) -> None:
    created = await create(client, "oc-fw", labels={"app": "openclaw"})
    ssh = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["127.0.0.1/32"])
    firewall = (await call(client.firewalls.create, name="fw", rules=[ssh])).firewall
    selector = FirewallResource(
        type="label_selector",
        label_selector=FirewallResourceLabelSelector(selector="app=openclaw"),
    )
    actions = await call(client.firewalls.apply_to_resources, firewall, [selector])
    assert [(await wait_action(client, a)).status for a in actions] == ["success"]
    server = await call(client.servers.get_by_id, created.server.id)
    assert [fw.firewall.id for fw in server.public_net.firewalls] == [firewall.id]
    applied = (await call(client.firewalls.get_by_id, firewall.id)).applied_to
    assert applied[0].applied_to_resources[0].server.id == server.id

    gateway = FirewallRule(direction="in", protocol="tcp", port="18789", source_ips=["0.0.0.0/0"])
    for action in await call(client.firewalls.set_rules, firewall, [ssh, gateway]):
        await wait_action(client, action)
    state_server = sim.state.server(server.id)
    assert sim.state.inbound_allowed(state_server, "127.0.0.2", "tcp", 18789)
    assert not sim.state.inbound_allowed(state_server, "127.0.0.2", "tcp", 22)

    in_use = await api_error(client.firewalls.delete, firewall)
    assert in_use.code == "resource_in_use"
    await call(client.firewalls.remove_from_resources, firewall, [selector])
    assert sim.state.inbound_allowed(state_server, "127.0.0.2", "tcp", 22)
    assert await call(client.firewalls.delete, firewall)


async def test_rebuild_and_server_scoped_actions(sim: HetznerSim, client: Client) -> None:
    recorder = Recorder()
    sim.add_listener(recorder)
    created = await create(client, "oc-rebuild")
    await wait_action(client, created.next_actions[0])
    server: BoundServer = created.server
    assert server.id is not None
    rebuilt = await call(client.servers.rebuild, server, Image(name="ubuntu-24.04"))
    assert rebuilt.root_password  # no SSH key at creation: a password comes back
    assert (await wait_action(client, rebuilt.action)).status == "success"
    assert ("rebuilt", server.id) in recorder.events
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        url = f"{sim.url}/servers/{server.id}/actions/{rebuilt.action.id}"
        async with http.get(url, headers=auth) as response:
            body = await response.json()
        assert body["action"]["command"] == "rebuild_server"
        assert body["action"]["status"] == "success"
        other = f"{sim.url}/servers/{server.id + 1}/actions/{rebuilt.action.id}"
        async with http.get(other, headers=auth) as response:
            assert response.status == 404
    listed = await call(client.servers.get_actions_list, server)
    assert {a.command for a in listed.actions} >= {"create_server", "rebuild_server"}


async def test_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        await HetznerSim(token=TOKEN).start(host="0.0.0.0")  # noqa: S104 - the point of the test


async def test_shutdown_and_power_actions_on_an_off_server(sim: HetznerSim, client: Client) -> None:
    recorder = Recorder()
    sim.add_listener(recorder)
    created = await create(client, "oc-power")
    assert created.action.status == "running" and created.action.progress < 100
    await wait_action(client, created.next_actions[0])
    await asyncio.wait_for(recorder.booted.wait(), 10)
    assert (
        await wait_action(client, await call(client.servers.shutdown, created.server))
    ).status == ("success")
    assert (await call(client.servers.get_by_id, created.server.id)).status == "off"
    for verb in (client.servers.reboot, client.servers.reset, client.servers.power_off):
        assert (await wait_action(client, await call(verb, created.server))).status == "success"
        assert (await call(client.servers.get_by_id, created.server.id)).status == "off"
    recorder.booted.clear()
    await wait_action(client, await call(client.servers.power_on, created.server))
    await asyncio.wait_for(recorder.booted.wait(), 10)
    assert sim.state.server(created.server.id).booted


async def test_delete_while_creating(sim: HetznerSim, client: Client) -> None:
    recorder = Recorder()
    sim.add_listener(recorder)
    created = await create(client, "oc-gone")
    delete = await call(client.servers.delete, created.server)
    assert (await wait_action(client, delete)).status == "success"
    assert (await wait_action(client, created.next_actions[0])).status == "error"
    assert await call(client.servers.get_all) == []
    assert ("booted", created.server.id) not in recorder.events
    assert ("deleted", created.server.id) in recorder.events


async def test_timed_out_create_is_resent_and_hits_uniqueness(sim: HetznerSim) -> None:
    # The first answer to POST /servers comes late (after the server exists); hcloud
    # times out, sends the POST again, and the unique name makes it a 409.
    client = Client(token=TOKEN, api_endpoint=sim.url, poll_interval=0.01, timeout=0.2)
    client._client._retry_interval_func = lambda retries: 0.01
    sim.faults.add_latency(0.5, "POST", "/servers", after=True, times=1)
    error = await rejected(create(client, "oc-once"))
    assert error.code == "uniqueness_error"
    assert [s.name for s in await call(client.servers.get_all)] == ["oc-once"]
    client._client._session.close()
