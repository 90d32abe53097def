"""`openclaw-hosted run` SIGKILLed at every provisioning step, then restarted: it
converges with exactly one server, and nothing orphaned."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sim.hetzner import HetznerSim
from sim.paddle import PaddleSim
from sim.vps import VpsSim
from tests.conftest import ADMIN_KEY, base_settings
from tests.provisioner.conftest import TOKEN, needs_root

pytestmark = needs_root

ROOT = Path(__file__).parents[2]
# Where we pull the plug: while each of these steps is the one in progress.
KILL_AT = ["project", "create", "boot", "install", "verify", "announce"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[tuple[HetznerSim, VpsSim]]:
    hetzner = HetznerSim(token=TOKEN, time_scale=0.01, address_pool="127.61.0.0/16")
    await hetzner.start()
    vps = VpsSim(hetzner, base_dir=tmp_path / "vps", gateway_ready_after_s=0.5)
    await vps.start()
    paddle = PaddleSim(api_key="pdl_sdbx_apikey_test")
    await paddle.start()
    yield hetzner, vps
    await paddle.stop()
    await vps.stop()
    await hetzner.stop()


def step_of(database: Path, instance_id: str) -> tuple[str, str | None]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute(
            "SELECT status, step FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
    return (row[0], row[1]) if row else ("", None)


async def test_sigkill_at_every_step_converges_to_one_server(
    tmp_path: Path, sims: tuple[HetznerSim, VpsSim]
) -> None:
    hetzner, _ = sims
    settings = {k.upper(): v for k, v in base_settings(tmp_path).items()}
    port = free_port()
    database = tmp_path / "db" / "test.db"
    settings |= {
        "HTTP_PORT": str(port), "HCLOUD_ENDPOINT": hetzner.url, "HCLOUD_TOKEN": TOKEN,
        "SSH_PORT": "2222", "START_GRACE_S": "5", "ADMIN_RATE_LIMIT_PER_S": "1000",
    }  # fmt: skip
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    env["PYTHONPATH"] = str(ROOT)

    async def start() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "run", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            for _ in range(2400):  # start-up imports take seconds on a busy machine
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status in (200, 503):  # serving (503: a part is down)
                            return process
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.025)
        raise AssertionError("the service did not start")

    process = await start()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/api/provision",
            json={"customer_email": "crash@example.com"},
            headers={"X-API-Key": ADMIN_KEY},
        ) as response,
    ):
        instance_id = (await response.json())["instance_id"]
    killed_at = []
    try:
        for target in KILL_AT:
            for _ in range(4000):  # watch the record the reconciler persists
                status, step = step_of(database, instance_id)
                current = step or ("project" if status == "provisioning" else status)
                if current == target or status == "active":
                    break
                await asyncio.sleep(0.005)
            if status == "active":
                break
            process.send_signal(signal.SIGKILL)
            await process.wait()
            killed_at.append(current)
            process = await start()
        for _ in range(2000):
            if step_of(database, instance_id)[0] in ("active", "failed"):
                break
            await asyncio.sleep(0.02)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
    assert step_of(database, instance_id)[0] == "active"
    # The plug was pulled in every step (announce lasts milliseconds: caught when it can be).
    assert set(KILL_AT) - {"announce"} <= set(killed_at), killed_at
    name = "oc-" + instance_id.removeprefix("inst_")
    servers = [s for s in hetzner.state.servers.values() if s.name.startswith("oc-")]
    assert [s.name for s in servers] == [name]  # exactly one server
    assert len(hetzner.state.ssh_keys) == 1 and len(hetzner.state.firewalls) == 1
    assert not [i for i in hetzner.state.images.values() if i.type == "snapshot"]
