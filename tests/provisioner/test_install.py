"""The install script on a simulated Ubuntu server: it brings up a hardened gateway,
keeps the password off every command line, can run twice, and fails when the
security audit is not clean."""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from provisioner import gateway
from provisioner.install import (
    install_script,
    new_gateway_password,
    password_hash,
    password_matches,
    template,
)
from tests.provisioner.test_ssh import World, running_world

VERSION = "2026.9.6"
PORT = 18789
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the VPS sandbox needs root")


def script_for(ip: str, hour: int = 3) -> str:
    return install_script(
        openclaw_version=VERSION,
        gateway_port=PORT,
        public_ip=ip,
        reboot_hour=hour,
        ready_timeout_s=20,
    )


# -- without a server ------------------------------------------------------------


def test_script_is_filled_in_and_refuses_odd_values() -> None:
    script = script_for("203.0.113.7", hour=4)
    assert not re.search(r"@[A-Z_]+@", script)
    assert 'OPENCLAW_VERSION="2026.9.6"' in script and 'PUBLIC_IP="203.0.113.7"' in script
    assert 'REBOOT_TIME="04:00"' in script and 'GATEWAY_PORT="18789"' in script
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    good = {"openclaw_version": VERSION, "gateway_port": PORT, "public_ip": "203.0.113.7"}
    bad_values: list[dict[str, object]] = [
        {"openclaw_version": "2026.9.6; rm -rf /"},
        {"openclaw_version": "latest"},
        {"gateway_port": 0},
        {"public_ip": "example.com"},
        {"public_ip": "2001:db8::1"},
        {"reboot_hour": 24},
    ]
    for bad in bad_values:
        with pytest.raises(ValueError):
            install_script(**({"reboot_hour": 3} | good | bad))  # type: ignore[arg-type]


def test_tools_are_called_by_name() -> None:
    # Absolute paths appear only inside files the script writes (unit, configs).
    body = template().split("main() {")[0]
    code = [line for line in body.splitlines() if not line.lstrip().startswith("#")]
    for line in code:
        assert not re.match(r"\s*/(usr/)?s?bin/", line), line


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_is_clean(tmp_path: Path) -> None:
    rendered = tmp_path / "install.sh"
    rendered.write_text(script_for("203.0.113.7"))
    template_path = Path(__file__).parents[2] / "provisioner" / "install.sh"
    shellcheck = shutil.which("shellcheck")
    assert shellcheck is not None
    for path in (template_path, rendered):
        result = subprocess.run(
            [shellcheck, "--shell=bash", "--severity=style", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_passwords_are_long_random_and_only_hashed() -> None:
    passwords = {new_gateway_password() for _ in range(50)}
    assert len(passwords) == 50
    allowed = set(string.ascii_letters + string.digits + "-_")
    assert all(len(p) == 32 and set(p) <= allowed for p in passwords)
    password = passwords.pop()
    stored = password_hash(password)
    assert password not in stored and stored != password_hash(password)  # salted
    assert password_matches(password, stored)
    assert not password_matches(password + "x", stored)
    assert not password_matches(password, "garbage")


# -- on a simulated server ---------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(tmp_path) as w:
        yield w


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@needs_root
async def test_install_brings_up_a_hardened_gateway_and_can_run_again(
    world: World, http: aiohttp.ClientSession
) -> None:
    server, host_key = await world.ready()
    ip, pinned = server.ip, host_key.public_openssh
    assert ip is not None
    machine = world.vps.vps(server.id)
    password = new_gateway_password()

    first = await world.ssh.run(ip, pinned, script_for(ip), secrets={"PW": password})
    assert first.exit_status == 0, first.output
    assert "==> done" in first.output and password not in first.output

    assert await gateway.ready(http, ip, PORT)
    assert await gateway.healthy(http, ip, PORT)
    assert await gateway.password_required(http, ip, PORT)
    assert await gateway.password_accepted(http, ip, PORT, password)
    assert not await gateway.password_accepted(http, ip, PORT, new_gateway_password())

    env = await world.ssh.read_file(ip, pinned, "/home/openclaw/.openclaw/.env")
    assert env == f"OPENCLAW_GATEWAY_PASSWORD={password}\n"
    modes = await world.ssh.run(
        ip,
        pinned,
        "cd /home/openclaw/.openclaw && stat -c '%n %a %U' . .env openclaw.json\n",
    )
    assert modes.output.split("\n")[:3] == [
        ". 700 openclaw",
        ".env 600 openclaw",
        "openclaw.json 600 openclaw",
    ]
    config = json.loads(machine.sandbox.read("/home/openclaw/.openclaw/openclaw.json") or "{}")
    assert "password" not in config["gateway"]["auth"]
    assert config["gateway"]["auth"]["rateLimit"] == {
        "maxAttempts": 10,
        "windowMs": 60000,
        "lockoutMs": 300000,
    }
    assert config["gateway"]["controlUi"]["allowedOrigins"] == [f"http://{ip}:{PORT}"]
    audit = await world.ssh.run(ip, pinned, "sudo -u openclaw -H openclaw security audit --json")
    assert json.loads(audit.output)["findings"] == []

    unit = machine.sandbox.read("/etc/systemd/system/openclaw-gateway.service") or ""
    for line in (
        "User=openclaw",
        "Restart=always",
        "RestartSec=5",
        "RestartPreventExitStatus=78",
        "TimeoutStartSec=90",
        "KillMode=mixed",
        "EnvironmentFile=/home/openclaw/.openclaw/.env",
        "Environment=OPENCLAW_NO_AUTO_UPDATE=1",
        "ExecStart=/usr/bin/node --max-old-space-size=2048"
        " /usr/lib/node_modules/openclaw/dist/index.js gateway --port 18789",
    ):
        assert line in unit.splitlines(), line
    assert machine.sandbox.exists(
        "/etc/systemd/system/multi-user.target.wants/openclaw-gateway.service"
    )
    sshd = machine.sandbox.read("/etc/ssh/sshd_config.d/00-openclaw-hosted.conf") or ""
    assert "PasswordAuthentication no" in sshd.splitlines()
    reboot = machine.sandbox.read("/etc/apt/apt.conf.d/52openclaw-hosted-reboot") or ""
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in reboot
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "03:00";' in reboot
    assert machine.units["ssh"]["last"] == "try-reload-or-restart"
    assert machine.units["unattended-upgrades"]["last"] == "enable"

    # Again, as a repair would, with a new password: finished work is skipped.
    renewed = new_gateway_password()
    again = await world.ssh.run(ip, pinned, script_for(ip), secrets={"PW": renewed})
    assert again.exit_status == 0, again.output
    assert "openclaw 2026.9.6 already installed" in again.output
    assert "already onboarded" in again.output
    assert len(machine.commands.matching(r"^npm install -g")) == 1
    assert len(machine.commands.matching(r"^apt-get install -y nodejs")) == 1
    assert len(machine.commands.matching(r"^openclaw onboard")) == 1
    assert await gateway.ready(http, ip, PORT)
    assert await gateway.password_accepted(http, ip, PORT, renewed)
    assert not await gateway.password_accepted(http, ip, PORT, password)
    env = await world.ssh.read_file(ip, pinned, "/home/openclaw/.openclaw/.env")
    assert env == f"OPENCLAW_GATEWAY_PASSWORD={renewed}\n"

    # Neither password is on any command line the server saw, nor in what it printed
    # (except our own reads of the .env file, which return it on purpose).
    for record in machine.commands.records:
        for secret in (password, renewed):
            assert secret not in record.command
            if not record.command.startswith("cat -- "):
                assert secret not in record.stdout + record.stderr
    assert all(
        r.command == "bash -s" or r.command.startswith("cat -- ") for r in machine.commands.ssh()
    )


@needs_root
async def test_other_env_lines_survive_and_the_install_fails_on_audit_warnings(
    world: World, http: aiohttp.ClientSession
) -> None:
    server, host_key = await world.ready()
    ip, pinned = server.ip, host_key.public_openssh
    assert ip is not None
    # The rate limit "succeeds" without being set: only the audit can notice.
    world.vps.fail_command(
        server.id, r"openclaw config set gateway\.auth\.rateLimit", exit_status=0, stderr=""
    )
    password = new_gateway_password()
    result = await world.ssh.run(ip, pinned, script_for(ip), secrets={"PW": password})
    assert result.exit_status != 0
    assert "gateway.auth.no_rate_limit" in result.output
    assert "security audit reports warnings" in result.output
    assert "==> done" not in result.output and password not in result.output

    # A customer's own .env lines are kept when the script runs again.
    await world.ssh.run(
        ip, pinned, "echo 'ANTHROPIC_API_KEY=sk-test' >> /home/openclaw/.openclaw/.env\n"
    )
    repaired = await world.ssh.run(ip, pinned, script_for(ip), secrets={"PW": password})
    assert repaired.exit_status == 0, repaired.output
    env = await world.ssh.read_file(ip, pinned, "/home/openclaw/.openclaw/.env")
    assert env == f"ANTHROPIC_API_KEY=sk-test\nOPENCLAW_GATEWAY_PASSWORD={password}\n"
    assert await gateway.password_accepted(http, ip, PORT, password)


@needs_root
async def test_a_failing_step_stops_the_install(world: World) -> None:
    server, host_key = await world.ready()
    ip, pinned = server.ip, host_key.public_openssh
    assert ip is not None
    world.vps.fail_command(server.id, r"openclaw config set gateway\.controlUi", exit_status=1)
    result = await world.ssh.run(ip, pinned, script_for(ip), secrets={"PW": "x" * 32})
    assert result.exit_status == 1
    machine = world.vps.vps(server.id)
    assert not machine.commands.matching(r"^systemctl restart openclaw-gateway")
    assert machine.gateway.active_state == "inactive"
