"""`openclaw-hosted sim` and `demo` start, show, and stop cleanly; `run` starts on the
printed settings."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from app.config import load_settings

ROOT = Path(__file__).parents[2]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    return {**env, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_run_starts_against_the_printed_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "sim.env"
    world = tmp_path / "world"
    sims = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "sim", "--data-dir", str(world),
        "--env-out", str(env_file), cwd=tmp_path, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    service = None
    try:
        assert sims.stdout is not None
        printed: list[str] = []
        while not printed or "Ctrl-C" not in printed[-1]:
            line = await asyncio.wait_for(sims.stdout.readline(), timeout=60)
            assert line, "the simulators exited early"
            printed.append(line.decode())
        text = "".join(printed)
        for name in ("Paddle API", "Hetzner Cloud API", "Telegram Bot API", "Customer VPSs"):
            assert name in text
        assert "0.0.0.0" not in text  # noqa: S104 - loopback only
        settings, problems = load_settings(env_file)
        assert problems == [] and settings is not None
        assert (env_file.stat().st_mode & 0o777) == 0o600
        port = free_port()
        env_file.write_text(env_file.read_text().replace("HTTP_PORT=8000", f"HTTP_PORT={port}"))
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "--env-file", str(env_file), "run",
            cwd=tmp_path, env=clean_env(), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            for _ in range(1200):  # start-up imports take seconds on a busy machine
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status in (200, 503):  # serving (503: a part is down)
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("run never answered /healthz")
    finally:
        for process in (service, sims):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.communicate(), timeout=30)
    assert sims.returncode == 0 and service is not None and service.returncode == 0
    leftovers = list((world / "vps").iterdir()) if (world / "vps").exists() else []
    assert leftovers == []  # every simulated server's sandbox removed


def test_demo_plays_the_whole_journey(tmp_path: Path) -> None:
    world = tmp_path / "world"
    result = run_cli(["demo", "--data-dir", str(world)], tmp_path)  # ends by itself
    if os.geteuid() != 0:  # no simulated servers: the demo says so and stops
        assert result.returncode == 1 and "need root" in result.stdout
        return
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout
    # The chats, with timestamps, in the order things happen.
    phases = [
        "its welcome page would say: waiting_for_payment",
        "subscription.created for grace@example.com: 200",
        "the welcome page says: provisioning",
        "provisioning a hardened OpenClaw server",
        "the welcome page says: active",
        "customer │ Grace: /start",
        "This chat is now connected",
        "the login page shows her way in",
        "ops │ Ada: /list",
        "Instances · 1",
        "is unhealthy: 3 failed health checks",
        "is healthy again after",
        "Your OpenClaw gateway is suspended",
        "suspended → destroyed",
        "its final snapshot is kept until",
        "The whole journey took",
    ]
    positions = [out.find(text) for text in phases]
    assert -1 not in positions, [t for t, p in zip(phases, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert "status ▌ inst_" in out  # the status bar
    # The service's own log went to a file, and nothing is left running or behind.
    assert (world / "demo.log").stat().st_size > 0
    assert [p for p in (world / "vps").iterdir() if not p.name.startswith("snap")] == []
