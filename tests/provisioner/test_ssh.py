"""SSH to simulated customer servers: host key pinned from the cloud-init user data,
secrets on stdin only, output redacted and capped. Real asyncssh against the VPS
simulator, servers created through the product's Hetzner facade."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from core.clock import SystemClock
from provisioner.budget import RequestBudget
from provisioner.cloud_init import HostKey, new_host_key, user_data
from provisioner.hetzner import Hetzner, ServerInfo
from provisioner.ssh import (
    OUTPUT_LIMIT,
    CommandTimeout,
    HostKeyMismatch,
    SshError,
    SshRunner,
    SshUnavailable,
    _Tail,
    known_hosts_line,
    stdin_prefix,
)
from sim.hetzner import HetznerSim
from sim.loopback import unique_pool
from sim.vps import VpsSim
from sim.vps_cloudinit import parse_cloud_config

TOKEN = "test-token"
TIME_SCALE = 0.002  # create-to-SSH 60 s → 0.12 s; gateway start 10 s → 0.02 s
SSH_PORT = 2222
SECRET = "s3cr3t-Value_with-32-characters"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the VPS sandbox needs root")


class World:
    """A Hetzner simulator with its VPSs, the product's Hetzner facade and SSH runner."""

    def __init__(self, hetzner: HetznerSim, vps: VpsSim, tmp: Path) -> None:
        self.hetzner = hetzner
        self.vps = vps
        self.facade = Hetzner(
            TOKEN,
            hetzner.url,
            budget=RequestBudget(),
            clock=SystemClock(),
            retry_backoff=lambda retries: 0.01,
        )
        backend_key = asyncssh.generate_private_key("ssh-ed25519")
        self.key_path = tmp / "backend_ed25519"
        self.key_path.write_bytes(backend_key.export_private_key())
        self.key_path.chmod(0o600)
        self.backend_public = backend_key.export_public_key().decode().strip()
        self.ssh = SshRunner(self.key_path, SSH_PORT, connect_timeout_s=5)

    async def create(self, name: str = "oc-a1b2c3d4e5f6") -> tuple[ServerInfo, HostKey]:
        key_id = await self.facade.ensure_ssh_key("backend", self.backend_public)
        host_key = new_host_key()
        server, actions = await self.facade.create_server(
            name=name,
            server_type="cax11",
            image="ubuntu-24.04",
            location="fsn1",
            ssh_key_id=key_id,
            user_data=user_data(host_key, self.backend_public),
            labels={"instance": name},
        )
        for action in actions:
            await self.facade.wait_action(action, expected_s=0.1)
        assert server.ip is not None
        return server, host_key

    async def create_from(self, image: int, name: str) -> tuple[ServerInfo, HostKey]:
        """A server made from a snapshot: cloud-init sees a new instance."""
        key_id = await self.facade.ensure_ssh_key("backend", self.backend_public)
        host_key = new_host_key()
        server, actions = await self.facade.create_server(
            name=name,
            server_type="cax11",
            image=image,
            location="fsn1",
            ssh_key_id=key_id,
            user_data=user_data(host_key, self.backend_public),
            labels={"instance": name},
        )
        for action in actions:
            await self.facade.wait_action(action, expected_s=0.1)
        return server, host_key

    async def ready(self, name: str = "oc-a1b2c3d4e5f6") -> tuple[ServerInfo, HostKey]:
        server, host_key = await self.create(name)
        assert server.ip is not None
        await self.ssh.wait_ready(
            server.ip, host_key.public_openssh, timeout_s=10, sleep=asyncio.sleep
        )
        return server, host_key


@contextlib.asynccontextmanager
async def running_world(tmp_path: Path) -> AsyncIterator[World]:
    """Shared with test_install.py."""
    hetzner = HetznerSim(token=TOKEN, time_scale=TIME_SCALE, address_pool=unique_pool())
    vps = VpsSim(hetzner, base_dir=tmp_path / "vps")
    await vps.start()
    await hetzner.start()
    w = World(hetzner, vps, tmp_path)
    try:
        yield w
    finally:
        w.facade.close()
        await hetzner.stop()
        await vps.stop()
    # Snapshot disks stay in tmp_path (pytest removes it); machines must not.
    left = [p.name for p in (tmp_path / "vps").iterdir() if not p.name.startswith("snapshot-")]
    assert not left, f"a sandbox was left behind: {left}"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(tmp_path) as w:
        yield w


class RecordedSleep:
    """The product's injectable sleep, returning at once and adding up what was asked."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def test_user_data_is_what_the_vps_simulator_applies() -> None:
    host_key = new_host_key()
    text = user_data(host_key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample backend # ops")
    assert text.startswith("#cloud-config\n") and len(text.encode()) <= 32 * 1024
    assert "ssh_deletekeys: true" in text and "ssh_pwauth: false" in text
    assert "disable_root: false" in text and "ssh_genkeytypes: []" in text
    parsed = parse_cloud_config(text)
    assert parsed.host_private_key == host_key.private_openssh
    assert parsed.host_public_key == host_key.public_openssh
    assert parsed.authorized_keys == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample backend # ops"]
    assert host_key.public_openssh.startswith("ssh-ed25519 AAAA")
    assert len(host_key.public_openssh.split()) == 2
    assert "PRIVATE" not in repr(host_key)
    with pytest.raises(ValueError):
        user_data(host_key, "ssh-ed25519 AAAA one\nssh-ed25519 AAAA two")


def test_known_hosts_line_matches_openssh_port_rules() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    assert known_hosts_line("203.0.113.5", 22, key + " comment") == f"203.0.113.5 {key}\n"
    assert known_hosts_line("203.0.113.5", 2222, key) == f"[203.0.113.5]:2222 {key}\n"


def test_stdin_prefix_quotes_and_refuses_bad_names() -> None:
    assert stdin_prefix({"PW": "a'b"}) == "PW='a'\\''b'\n"
    with pytest.raises(ValueError):
        stdin_prefix({"PW; rm -rf /": "x"})


def test_tail_redacts_a_secret_cut_by_the_cap() -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    tail = _Tail([secret], limit=100)
    tail.add(b"x" * 150 + secret)
    tail.add(b"y" * 150)  # trims inside the secret: its end must not survive
    text = tail.text()
    assert len(text) <= 100 and "abcdef" not in text
    tail = _Tail([secret], limit=100)
    tail.add(b"start " + secret + b" end")
    assert tail.text() == "start [redacted] end"


async def test_wait_ready_pins_the_host_key_from_user_data(world: World) -> None:
    server, host_key = await world.create()
    assert server.ip is not None
    await world.ssh.wait_ready(
        server.ip, host_key.public_openssh, timeout_s=10, sleep=asyncio.sleep
    )
    other = new_host_key().public_openssh
    started = time.monotonic()
    sleep = RecordedSleep()
    with pytest.raises(HostKeyMismatch) as raised:
        await world.ssh.wait_ready(server.ip, other, timeout_s=60, sleep=sleep)
    assert raised.value.code == "host_key_mismatch"
    assert sleep.calls == [] and time.monotonic() - started < 5  # at once, no retries
    with pytest.raises(HostKeyMismatch):
        await world.ssh.run(server.ip, other, "echo never")
    # Nothing ran on the server with the wrong key.
    assert world.vps.vps(server.id).commands.ssh() == []


async def test_a_server_from_a_snapshot_presents_its_own_new_host_key(world: World) -> None:
    source, source_key = await world.ready()
    assert source.ip is not None
    await world.ssh.run(source.ip, source_key.public_openssh, "echo kept > /root/marker\n")
    image, action = await world.facade.snapshot(source.id, "golden", {"kind": "test"})
    await world.facade.wait_action(action, expected_s=0.1)
    server, host_key = await world.create_from(image, "oc-b1b2c3d4e5f6")
    assert server.ip is not None and server.ip != source.ip
    await world.ssh.wait_ready(
        server.ip, host_key.public_openssh, timeout_s=10, sleep=asyncio.sleep
    )
    assert await world.ssh.read_file(server.ip, host_key.public_openssh, "/root/marker") == (
        "kept\n"
    )
    with pytest.raises(HostKeyMismatch):
        await world.ssh.wait_ready(
            server.ip, source_key.public_openssh, timeout_s=10, sleep=asyncio.sleep
        )


async def test_wait_ready_gives_up_after_its_timeout_on_the_given_clock(world: World) -> None:
    sleep = RecordedSleep()
    key = new_host_key().public_openssh
    with pytest.raises(SshUnavailable) as raised:
        await world.ssh.wait_ready("127.0.0.1", key, timeout_s=3, sleep=sleep)
    assert raised.value.code == "ssh_unavailable"
    assert 2 <= sum(sleep.calls) <= 3
    assert sleep.calls[0] == pytest.approx(0.05) and max(sleep.calls) <= 2.0
    assert sleep.calls == sorted(sleep.calls)  # backs off


async def test_a_refused_key_is_retried_then_reported(world: World) -> None:
    server, host_key = await world.ready()
    assert server.ip is not None
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    path = world.key_path.with_name("stranger")
    path.write_bytes(stranger.export_private_key())
    runner = SshRunner(path, SSH_PORT)
    sleep = RecordedSleep()
    with pytest.raises(SshError) as raised:
        await runner.wait_ready(server.ip, host_key.public_openssh, timeout_s=0.3, sleep=sleep)
    assert raised.value.code == "permission_denied" and len(sleep.calls) >= 2


async def test_run_passes_secrets_on_stdin_and_redacts_them(world: World) -> None:
    server, host_key = await world.ready()
    ip, pinned = server.ip, host_key.public_openssh
    assert ip is not None
    quoted = 'it\'s a "secret" $(not run) `nor this`'
    script = (
        'echo "pw=$PW"\n'
        'echo "to stderr: $PW" >&2\n'
        'printf "%s" "$ODD" > /root/odd\n'
        'echo "ip=$IP exported=${PW_IN_ENV:-no}"\n'
        'env | grep -c "^PW=" || true\n'
        "exit 3\n"
    )
    result = await world.ssh.run(
        ip, pinned, script, secrets={"PW": SECRET, "ODD": quoted}, variables={"IP": ip}
    )
    assert result.exit_status == 3
    assert SECRET not in result.output
    assert "pw=[redacted]" in result.output and "to stderr: [redacted]" in result.output
    assert f"ip={ip} exported=no" in result.output
    assert result.output.splitlines()[-1] == "0"  # a shell variable, not in children's env
    assert await world.ssh.read_file(ip, pinned, "/root/odd") == quoted
    records = world.vps.vps(server.id).commands.records
    assert records and all(SECRET not in r.command for r in records)
    assert all("$(not run)" not in r.command for r in records)


async def test_output_is_capped_to_its_tail_and_still_redacted(world: World) -> None:
    server, host_key = await world.ready()
    assert server.ip is not None
    script = 'for i in $(seq 1 20000); do echo "line $i $PW"; done\necho last line\n'
    result = await world.ssh.run(server.ip, host_key.public_openssh, script, secrets={"PW": SECRET})
    assert result.exit_status == 0
    assert len(result.output.encode()) <= OUTPUT_LIMIT
    assert result.output.endswith("last line\n")
    assert SECRET not in result.output and "line 20000 [redacted]" in result.output
    # A fragment of the secret at the cut is dropped too.
    assert SECRET[8:] not in result.output


async def test_timeouts_and_missing_files_raise(world: World) -> None:
    server, host_key = await world.ready()
    ip, pinned = server.ip, host_key.public_openssh
    assert ip is not None
    with pytest.raises(CommandTimeout) as raised:
        await world.ssh.run(ip, pinned, "echo started\nsleep 3\n", timeout_s=0.5)
    assert "started" in raised.value.output
    with pytest.raises(SshError) as missing:
        await world.ssh.read_file(ip, pinned, "/root/does not exist")
    assert missing.value.code == "read_failed"
