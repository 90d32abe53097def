"""Contract tests: the real hcloud client and real asyncssh against the Hetzner
simulator with the customer VPS simulator listening to it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest
from hcloud import Client
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.server_types import ServerType

from sim.hetzner import HetznerSim
from sim.loopback import unique_pool
from sim.vps import VpsSim

TOKEN = "test-token"
TIME_SCALE = 0.002  # 60 s create-to-SSH → 0.12 s; gateway start 10 s → 0.02 s
PASSWORD = "correct-horse-battery-staple-42"  # >= 24 characters
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the VPS sandbox needs root")


def cloud_config(host_key: asyncssh.SSHKey) -> str:
    private = host_key.export_private_key().decode()
    indented = "".join("    " + line + "\n" for line in private.splitlines())
    public = host_key.export_public_key().decode().strip()
    return f"#cloud-config\nssh_keys:\n  ed25519_private: |\n{indented}  ed25519_public: {public}\n"


INSTALL = """set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
id openclaw >/dev/null 2>&1 || useradd -m -s /bin/bash openclaw
curl -fsSL https://deb.nodesource.com/setup_24.x | bash -
apt-get install -y nodejs
node --version
npm install -g --allow-scripts=openclaw openclaw@2026.9.6
loginctl enable-linger openclaw
sudo -u openclaw -H openclaw onboard --non-interactive --accept-risk --mode local \
  --auth-choice skip --gateway-auth password --gateway-password "$PW" --gateway-bind lan \
  --gateway-port 18789 --skip-channels --skip-skills --skip-search --skip-daemon \
  --skip-health --skip-ui --json
"""

HARDEN = """set -euo pipefail
umask 077
printf 'OPENCLAW_GATEWAY_PASSWORD=%s\\n' "$PW" > /home/openclaw/.openclaw/.env
chown openclaw:openclaw /home/openclaw/.openclaw/.env
chmod 700 /home/openclaw/.openclaw
sudo -u openclaw -H openclaw config unset gateway.auth.password
sudo -u openclaw -H openclaw config set gateway.auth.rateLimit \
  '{"maxAttempts":10,"windowMs":60000,"lockoutMs":300000}' --strict-json
sudo -u openclaw -H openclaw config set gateway.controlUi.allowedOrigins \
  "[\\"http://$IP:18789\\"]" --strict-json
cat > /etc/systemd/system/openclaw-gateway.service <<UNIT
[Unit]
Description=OpenClaw Gateway
After=network-online.target
[Service]
User=openclaw
EnvironmentFile=/home/openclaw/.openclaw/.env
ExecStart=/usr/bin/node --max-old-space-size=2048 \\
  /usr/lib/node_modules/openclaw/dist/index.js gateway --port 18789
Restart=always
RestartSec=5
RestartPreventExitStatus=78
TimeoutStartSec=90
KillMode=mixed
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable openclaw-gateway
systemctl start openclaw-gateway
systemctl enable --now unattended-upgrades
systemctl is-active openclaw-gateway
"""


class World:
    def __init__(self, hetzner: HetznerSim, vps: VpsSim, tmp: Path) -> None:
        self.hetzner = hetzner
        self.vps = vps
        self.tmp = tmp
        self.client = Client(token=TOKEN, api_endpoint=hetzner.url, poll_interval=0.01)
        self.client._client._retry_interval_func = lambda retries: 0.01
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def create(self, name: str = "oc-a1b2c3d4e5f6", firewall_from: str | None = None) -> Any:
        key = await self.call(
            self.client.ssh_keys.create,
            name=f"k-{name}",
            public_key=self.client_key.export_public_key().decode(),
        )
        firewalls = []
        if firewall_from is not None:
            rules = [
                FirewallRule(direction="in", protocol="tcp", port=port, source_ips=[firewall_from])
                for port in ("2222", "18789")
            ]
            made = await self.call(self.client.firewalls.create, name=f"fw-{name}", rules=rules)
            firewalls = [made.firewall]
        response = await self.call(
            self.client.servers.create,
            name,
            server_type=ServerType(name="cax11"),
            image=Image(name="ubuntu-24.04"),
            ssh_keys=[key],
            firewalls=firewalls,
            user_data=cloud_config(self.host_key),
        )
        return response.server

    def known_hosts(self, ip: str, key: asyncssh.SSHKey | None = None) -> Any:
        public = (key or self.host_key).export_public_key().decode().strip()
        return asyncssh.import_known_hosts(f"[{ip}]:2222 {public}\n")

    async def connect(self, ip: str, **kwargs: Any) -> Any:
        options: dict[str, Any] = {
            "port": 2222,
            "username": "root",
            "client_keys": [self.client_key],
            "known_hosts": self.known_hosts(ip),
            "connect_timeout": 5,
        }
        options.update(kwargs)
        return await asyncssh.connect(ip, **options)

    async def wait_ssh(self, ip: str, until: float = 10.0) -> Any:
        deadline = asyncio.get_running_loop().time() + until
        while True:
            try:
                return await self.connect(ip)
            except (OSError, asyncssh.Error):
                assert asyncio.get_running_loop().time() < deadline, "SSH never came up"
                await asyncio.sleep(0.02)

    async def wait_action(self, action: Any) -> None:
        for _ in range(1000):
            current = await self.call(self.client.actions.get_by_id, action.id)
            if current.status != "running":
                assert current.status == "success"
                return
            await asyncio.sleep(0.01)
        raise AssertionError("action hangs")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    # A loopback /16 of its own, so that simulated servers of parallel runs never meet.
    hetzner = HetznerSim(token=TOKEN, time_scale=TIME_SCALE, address_pool=unique_pool())
    vps = VpsSim(hetzner, base_dir=tmp_path / "vps", gateway_ready_after_s=1e6)
    await vps.start()
    await hetzner.start()
    w = World(hetzner, vps, tmp_path)
    yield w
    w.client._client._session.close()
    await hetzner.stop()
    await vps.stop()
    assert not any((tmp_path / "vps").iterdir()), "a sandbox was left behind"


def host_paths_written() -> list[str]:
    """Paths the install script writes on a real server; none may exist on the host."""
    paths = (
        "/etc/systemd/system/openclaw-gateway.service",
        "/home/openclaw",
        "/usr/lib/node_modules/openclaw/package.json",
        "/etc/apt/sources.list.d/nodesource.list",
    )
    return [p for p in paths if os.path.lexists(p)]


async def http_get(url: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, await r.json(
            content_type=None
        ) if "json" in r.content_type else await r.text()


async def until(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.02)


async def test_ssh_pins_host_key_from_user_data_and_refuses_strangers(world: World) -> None:
    server = await world.create(firewall_from="127.0.0.1/32")
    ip = server.public_net.ipv4.ip
    conn = await world.wait_ssh(ip)
    async with conn:
        result = await conn.run("hostname; cat /etc/os-release | head -1; whoami", check=True)
    assert result.stdout.splitlines()[0] == "oc-a1b2c3d4e5f6"
    assert "Ubuntu 24.04" in result.stdout
    with pytest.raises(asyncssh.PermissionDenied):
        await world.connect(ip, client_keys=[asyncssh.generate_private_key("ssh-ed25519")])
    with pytest.raises(asyncssh.PermissionDenied):
        await world.connect(ip, username="ubuntu")
    wrong = world.known_hosts(ip, asyncssh.generate_private_key("ssh-ed25519"))
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await world.connect(ip, known_hosts=wrong)
    with pytest.raises((OSError, asyncssh.Error)):
        await world.connect(ip, local_addr=("127.0.0.5", 0))


async def test_onboarding_brings_up_a_gateway_and_nothing_touches_the_host(world: World) -> None:
    server = await world.create()
    ip = server.public_net.ipv4.ip
    machine = world.vps.vps(server.id)
    async with await world.wait_ssh(ip) as conn:
        assert (await conn.run("command -v node openclaw")).exit_status == 1
        # Secrets go in on stdin: sshd accepts only LANG/LC_* from the client.
        env = f"PW='{PASSWORD}'\nIP={ip}\n"
        install = await conn.run("bash -s", input=env + INSTALL)
        assert install.exit_status == 0, install.stderr
        assert "v24." in install.stdout
        audit = await conn.run("sudo -u openclaw -H openclaw security audit --json", check=True)
        checks = {f["checkId"] for f in json.loads(audit.stdout)["findings"]}
        assert {"gateway.auth.password_in_config", "gateway.auth.no_rate_limit"} <= checks
        assert "gateway.control_ui.allowed_origins_missing" in checks
        assert "fs.state_dir.perms" in checks
        harden = await conn.run("bash -s", input=env + HARDEN)
        assert harden.exit_status == 0, harden.stderr
        assert harden.stdout.strip().endswith("active")
        audit = await conn.run("sudo -u openclaw -H openclaw security audit --json", check=True)
        assert json.loads(audit.stdout)["findings"] == []
        base = f"http://{ip}:18789"

        async def live() -> bool:
            try:
                return (await http_get(base + "/healthz"))[0] == 200
            except aiohttp.ClientError:
                return False

        await until(live)
        assert await http_get(base + "/healthz") == (200, {"ok": True, "status": "live"})
        assert (await http_get(base + "/readyz")) == (503, {"ready": False, "reason": "starting"})
        machine.gateway.ready_after_s = 0  # the start-up window passes
        assert await http_get(base + "/readyz") == (200, {"ready": True})
        assert (await http_get(base + "/control-ui-config.json"))[0] == 401
        wrong = await http_get(base + "/control-ui-config.json", Authorization="Bearer nope")
        assert wrong[0] == 401
        right = await http_get(base + "/control-ui-config.json", Authorization=f"Bearer {PASSWORD}")
        assert right[0] == 200
        assert (await http_get(base + "/api/health"))[0] == 404
        assert "OpenClaw" in (await http_get(base + "/"))[1]
        health = await conn.run("sudo -u openclaw -H openclaw health --json")
        assert health.exit_status == 0 and json.loads(health.stdout)["ok"] is True
        local = await conn.run("curl -fsS http://localhost:18789/healthz", check=True)
        assert json.loads(local.stdout)["status"] == "live"
        link = await conn.run("sudo -u openclaw -H openclaw dashboard --no-open --json", check=True)
        assert "#bootstrapToken=" in json.loads(link.stdout)["url"]
        shown = await conn.run(
            "systemctl show openclaw-gateway -p ActiveState,NRestarts", check=True
        )
        assert shown.stdout == "ActiveState=active\nNRestarts=0\n"
        assert (await conn.run("systemctl is-active ssh", check=True)).stdout == "active\n"
        assert (
            "Started openclaw-gateway" in (await conn.run("journalctl -u openclaw-gateway")).stdout
        )
        owner = await conn.run("stat -c %U /home/openclaw/.openclaw/openclaw.json", check=True)
        assert owner.stdout.strip() == "openclaw"
    # The sandbox wrote only to its own disk.
    assert host_paths_written() == []
    assert machine.sandbox.read("/etc/systemd/system/openclaw-gateway.service") is not None
    ssh = machine.commands.ssh()
    assert ssh[0].command == "command -v node openclaw" and ssh[0].exit_status == 1
    assert all(r.exit_status == 0 for r in ssh[1:])
    assert machine.commands.matching(
        r"^npm install -g --allow-scripts=openclaw openclaw@2026\.9\.6"
    )


async def test_power_cycle_stops_and_restores_ssh_and_gateway(world: World) -> None:
    server = await world.create()
    ip = server.public_net.ipv4.ip
    async with await world.wait_ssh(ip) as conn:
        env = f"PW='{PASSWORD}'\nIP={ip}\n"
        assert (await conn.run("bash -s", input=env + INSTALL)).exit_status == 0
        assert (await conn.run("bash -s", input=env + HARDEN)).exit_status == 0
    base = f"http://{ip}:18789/healthz"

    async def gateway_up() -> bool:
        try:
            return (await http_get(base))[0] == 200
        except aiohttp.ClientError:
            return False

    await until(gateway_up)
    bound = world.client.servers.get_by_id
    await world.wait_action(
        await world.call(world.client.servers.power_off, await world.call(bound, server.id))
    )
    with pytest.raises(OSError):
        await world.connect(ip)
    assert not await gateway_up()
    await world.wait_action(
        await world.call(world.client.servers.power_on, await world.call(bound, server.id))
    )
    async with await world.wait_ssh(ip) as conn:
        await until(gateway_up)
        kept = await conn.run("cat /etc/systemd/system/openclaw-gateway.service", check=True)
        assert "ExecStart=" in kept.stdout


async def test_knob_fails_a_command_n_times_then_it_succeeds(world: World) -> None:
    server = await world.create()
    ip = server.public_net.ipv4.ip
    world.vps.fail_command(
        server.id, r"apt-get install", times=2, exit_status=100, stderr="E: boom\n"
    )
    async with await world.wait_ssh(ip) as conn:
        results = [await conn.run("apt-get install -y jq") for _ in range(3)]
    assert [r.exit_status for r in results] == [100, 100, 0]
    assert results[0].stderr == "E: boom\n"
    records = world.vps.vps(server.id).commands.ssh()
    assert [r.exit_status for r in records] == [100, 100, 0]
    assert [r.failed_by_knob for r in records] == [True, True, False]


async def test_gateway_knobs_crash_leak_hang_and_rebuild_wipes(world: World) -> None:
    server = await world.create()
    ip = server.public_net.ipv4.ip
    machine = world.vps.vps(server.id)
    base = f"http://{ip}:18789/healthz"

    async def gateway_up() -> bool:
        try:
            return (await http_get(base))[0] == 200
        except aiohttp.ClientError:
            return False

    async with await world.wait_ssh(ip) as conn:
        env = f"PW='{PASSWORD}'\nIP={ip}\n"
        assert (await conn.run("bash -s", input=env + INSTALL)).exit_status == 0
        lan_without_auth = await conn.run(
            "sudo -u openclaw -H openclaw onboard --non-interactive --accept-risk"
            " --gateway-auth none --gateway-bind lan"
        )
        assert lan_without_auth.exit_status == 78
        assert (await conn.run("bash -s", input=env + HARDEN)).exit_status == 0
        await until(gateway_up)
        await world.vps.crash_gateway(server.id)
        assert not machine.gateway.listening
        assert not await gateway_up()
        await until(gateway_up)  # Restart=always brings it back
        shown = await conn.run("systemctl show openclaw-gateway -p NRestarts --value", check=True)
        assert shown.stdout == "1\n"
        assert (
            "Main process exited" in (await conn.run("journalctl -u openclaw-gateway -n 20")).stdout
        )
        world.vps.leak_memory(server.id, mb_per_hour=1e9)

        async def memory_grew() -> bool:
            shown = await conn.run("systemctl show openclaw-gateway -p MemoryCurrent --value")
            return int(shown.stdout) > 2 * 1024**3

        await until(memory_grew)
        world.vps.set_usage(server.id, memory_used_mb=3500, disk_used_gb=30.0)
        free = (await conn.run("free -m", check=True)).stdout.splitlines()[1].split()
        assert free[2] == "3500"
        assert " 79% /" in (await conn.run("df /", check=True)).stdout
        world.vps.hang_gateway(server.id)
        timeout = aiohttp.ClientTimeout(total=0.3)
        with pytest.raises(asyncio.TimeoutError):
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await session.get(base)
        world.vps.hang_gateway(server.id, False)
    bound = await world.call(world.client.servers.get_by_id, server.id)
    rebuild = await world.call(bound.rebuild, Image(name="ubuntu-24.04"))
    await world.wait_action(rebuild.action)
    async with await world.wait_ssh(ip) as conn:
        gone = await conn.run("id openclaw; test -e /etc/systemd/system/openclaw-gateway.service")
        assert gone.exit_status != 0
    assert not await gateway_up()


async def test_tools_run_as_their_caller_through_the_guest_command_server(world: World) -> None:
    server = await world.create()
    async with await world.wait_ssh(server.public_net.ipv4.ip) as conn:
        setup = await conn.run(
            "set -e; test -S /run/ocsim-guest.sock\n"
            "cd /tmp && curl -fsSL https://deb.nodesource.com/setup_24.x -o setup.sh\n"
            "bash setup.sh >/dev/null && apt-get install -y nodejs >/dev/null\n"
            "npm install -g --allow-scripts=openclaw openclaw@2026.9.6 >/dev/null\n"
            "useradd -m -s /bin/bash openclaw",
        )
        assert setup.exit_status == 0, setup.stderr
        # The working directory, environment, umask and user are the caller's.
        check = await conn.run(
            "test -f /tmp/setup.sh && cd /tmp && umask 077 && OPENCLAW_STATE_DIR=/tmp/oc "
            "openclaw onboard --non-interactive --accept-risk --json >/dev/null && "
            "stat -c '%a %U' /tmp/oc/openclaw.json && "
            "sudo -u openclaw -H openclaw config file && "
            "sudo -u openclaw -H sh -c 'openclaw onboard --non-interactive --accept-risk "
            "--json >/dev/null; stat -c %U ~/.openclaw/openclaw.json'"
        )
        assert check.stdout.split("\n")[:3] == [
            "600 root",
            "/home/openclaw/.openclaw/openclaw.json",
            "openclaw",
        ], check.stderr
        # Exit statuses and both output streams come back; a signal reaches the tool's
        # process (sudo runs `sleep` in a process of its own), and kills the shim after.
        statuses = await conn.run(
            "reboot; echo $?; systemctl is-active openclaw-gateway; echo $?; timeout "
            "--preserve-status 0.2 sudo sleep 31; echo $?; pgrep -fx 'sleep 31' || echo gone"
        )
        assert statuses.stdout.split() == ["1", "inactive", "3", "143", "gone"]
        assert "use the Hetzner API" in statuses.stderr
        # Without the server, the shims run each tool in a Python of its own.
        alone = await conn.run("rm /run/ocsim-guest.sock && lsb_release -cs && node --version")
        assert alone.stdout.split() == ["noble", "v24.16.0"], alone.stderr


async def test_tools_work_without_a_c_compiler(world: World) -> None:
    world.vps.shim = None  # as on a machine without cc: the shim is a shell script
    server = await world.create()
    async with await world.wait_ssh(server.public_net.ipv4.ip) as conn:
        result = await conn.run("head -n 1 /run/ocsim/shim; lsb_release -cs; df -h /")
    assert result.stdout.splitlines()[:2] == ["#!/bin/sh", "noble"], result.stderr
    assert "/dev/sda1" in result.stdout
