"""SshGatewayControl against a really provisioned simulated server."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp
import pytest

from core.gateway_control import GatewayUnavailable
from provisioner.cloud_init import new_host_key
from provisioner.gateway_control import (
    SshGatewayControl,
    parse_dashboard_link,
    password_from_env,
    rewrite_host,
)
from tests.provisioner.conftest import World, needs_root


@needs_root
async def test_owner_link_and_password_come_from_the_server(world: World) -> None:
    instance_id = await world.provision()
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert instance["status"] == "active"
    ip = instance["server_ip"]
    control = SshGatewayControl(world.core.db, world.infra.ssh, 18789)

    link = await control.owner_link(instance_id)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", f"{ip}:18789", "/")
    token = parts.fragment.removeprefix("bootstrapToken=")
    assert parts.fragment.startswith("bootstrapToken=") and len(token) >= 32
    # Minted on the server itself, by the service user, each time a fresh one.
    machine = world.vps.vps(instance["hetzner_server_id"])
    minted = machine.sandbox.read("/home/openclaw/.openclaw/devices/bootstrap.json") or ""
    assert token in [json.loads(line)["token"] for line in minted.splitlines()]
    assert await control.owner_link(instance_id) != link
    async with aiohttp.ClientSession() as http, http.get(link) as response:
        assert response.status == 200  # the Control UI answers at the rewritten address

    env = machine.sandbox.read("/home/openclaw/.openclaw/.env") or ""
    assert await control.gateway_password(instance_id) == password_from_env(env)
    assert len(await control.gateway_password(instance_id)) >= 32


@needs_root
async def test_unknown_or_unreachable_server_is_a_readable_error(world: World) -> None:
    control = SshGatewayControl(world.core.db, world.infra.ssh, 18789)
    with pytest.raises(GatewayUnavailable, match="does not exist"):
        await control.owner_link("inst_nothinghere")
    instance_id = await world.provision()  # not provisioned yet: no server to ask
    with pytest.raises(GatewayUnavailable, match="still being set up"):
        await control.gateway_password(instance_id)
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    world.vps.fail_command(instance["hetzner_server_id"], "openclaw dashboard")
    with pytest.raises(GatewayUnavailable, match="did not hand out a login link"):
        await control.owner_link(instance_id)
    # A server presenting another host key is never talked to.
    async with world.core.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET ssh_host_key = ? WHERE id = ?",
            (new_host_key().public_openssh, instance_id),
        )
    with pytest.raises(GatewayUnavailable, match="could not be reached"):
        await control.gateway_password(instance_id)


def test_parsing_survives_noise_and_rewrites_the_host() -> None:
    output = (
        "(node:12) ExperimentalWarning: something\n"
        '{"url": "http://127.0.0.1:18789/#bootstrapToken=abc_DEF-123", "opened": false}\n'
    )
    assert parse_dashboard_link(output) == "http://127.0.0.1:18789/#bootstrapToken=abc_DEF-123"
    plain = "Dashboard URL: http://127.0.0.1:18789/#bootstrapToken=xyz\n"
    assert parse_dashboard_link(plain) == "http://127.0.0.1:18789/#bootstrapToken=xyz"
    assert parse_dashboard_link("Error: gateway not configured\n") is None
    assert (
        rewrite_host("http://127.0.0.1:18789/#bootstrapToken=t", "203.0.113.7", 18789)
        == "http://203.0.113.7:18789/#bootstrapToken=t"
    )
    assert rewrite_host("http://localhost/x?y=1#bootstrapToken=t", "2001:db8::1", 80) == (
        "http://[2001:db8::1]:80/x?y=1#bootstrapToken=t"
    )
    assert password_from_env("A=1\nexport OPENCLAW_GATEWAY_PASSWORD='p w'\n") == "p w"
    assert password_from_env("A=1\n") is None
