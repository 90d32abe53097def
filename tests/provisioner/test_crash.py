"""`openclaw-hosted run` SIGKILLed at every provisioning step, then restarted: it
converges with exactly one server, and nothing orphaned."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp

from sim.hetzner import HetznerSim
from sim.vps import VpsSim
from tests.conftest import ADMIN_KEY
from tests.provisioner.conftest import needs_root
from tests.provisioner.service_process import ServiceProcess

pytestmark = needs_root

# Where we pull the plug: while each of these steps is the one in progress.
KILL_AT = ["project", "create", "boot", "install", "verify", "announce"]


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
    service = ServiceProcess(tmp_path, hetzner)
    port, database, start = service.port, service.database, service.start

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
