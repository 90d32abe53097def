"""A fleet rollout survives `openclaw-hosted run` being SIGKILLed (in the canary's soak,
and mid-batch with upgrades running) and finishes after each restart: every instance
upgraded exactly once, by one rollout."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from sim.hetzner import HetznerSim
from sim.vps import VpsSim
from tests.conftest import ADMIN_KEY
from tests.provisioner.conftest import needs_root
from tests.provisioner.service_process import ServiceProcess

pytestmark = needs_root

NEW = "2026.10.1"


def query(database: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params).fetchall())


async def until(probe: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    """Poll the database the service writes (another process: nothing to wait on)."""
    try:
        async with asyncio.timeout(timeout_s):  # a hang fails here, with what it waited for
            while not probe():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def test_a_rollout_survives_sigkill_and_resumes(
    tmp_path: Path, sims: tuple[HetznerSim, VpsSim]
) -> None:
    hetzner, vps = sims
    service = ServiceProcess(tmp_path, hetzner, stderr=(tmp_path / "service.log").open("ab"))
    base, database, start = service.base, service.database, service.start

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"X-API-Key": ADMIN_KEY}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}{path}", json=body, headers=headers) as response,
        ):
            assert response.status in (200, 202), await response.text()
            answer: dict[str, Any] = await response.json()
            return answer

    def running_upgrades(batch: int) -> bool:
        return bool(
            query(
                database,
                "SELECT 1 FROM operations o JOIN rollout_instances r ON r.operation_id = o.id"
                " WHERE o.kind = 'upgrade' AND o.state = 'running' AND r.batch = ?",
                (batch,),
            )
        )

    def rollout() -> sqlite3.Row:
        [row] = query(database, "SELECT * FROM rollouts")
        return row

    def moment_or_end(probe: Callable[[], bool]) -> bool:
        return probe() or rollout()["state"] != "running"

    process = await start()
    try:
        ids = [
            (await post("/api/provision", {"customer_email": f"c{n}@example.com"}))["instance_id"]
            for n in range(3)
        ]
        active = "SELECT COUNT(*) FROM instances WHERE status = 'active'"
        await until(lambda: query(database, active)[0][0] == 3, "three instances active")
        await post(
            "/api/fleet/upgrade",
            {
                "version": NEW, "canary": 1, "batch_size": 2, "soak_s": 1,
                "respect_quiet_window": False,
            },
        )  # fmt: skip
        killed_at = []
        for moment, probe in (
            ("soak", lambda: rollout()["phase"] == "soak"),
            ("batch upgrading", lambda: running_upgrades(1)),
        ):
            await until(partial(moment_or_end, probe), moment)
            if rollout()["state"] != "running":
                break
            process.send_signal(signal.SIGKILL)
            await process.wait()
            killed_at.append(moment)
            process = await start()
        await until(lambda: rollout()["state"] != "running", "the rollout finished")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=30)

    assert killed_at == ["soak", "batch upgrading"]
    assert rollout()["state"] == "done"
    members = query(database, "SELECT * FROM rollout_instances ORDER BY batch")
    assert [(m["batch"], m["state"]) for m in members] == [
        (0, "upgraded"),
        (1, "upgraded"),
        (1, "upgraded"),
    ]
    operations = query(database, "SELECT * FROM operations WHERE kind = 'upgrade'")
    assert sorted(op["instance_id"] for op in operations) == sorted(ids)  # once each
    assert {op["state"] for op in operations} == {"done"}
    for row in query(database, "SELECT * FROM instances"):
        assert row["openclaw_version"] == NEW
        machine = vps.vps(row["hetzner_server_id"])
        package = machine.sandbox.read("/usr/lib/node_modules/openclaw/package.json")
        assert package is not None and json.loads(package)["version"] == NEW
