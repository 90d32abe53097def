"""The whole journey against the real service process: `openclaw-hosted run` started
on the simulators' settings, driven only from outside (storefront, signed webhooks,
Telegram users, a browser, the admin API, a crash in the simulated server), then the
transcripts, the database and the simulated world checked."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from app.demo import DEMO_SETTINGS
from app.demo_view import DemoView
from app.journey import Journey
from app.simulators import Simulators
from sim.loopback import unique_pool
from tests.app.test_demo import clean_env, free_port

# Billing deadlines of seconds instead of days: the process's clock cannot be moved
# from outside, so the journey waits for them instead of travelling in time.
SHORT_DAYS = 6 / 86400


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    if os.geteuid() != 0:
        pytest.skip("simulated servers need root")
    world = Simulators(
        tmp_path / "world", time_scale=0.05, http_port=free_port(), address_pool=unique_pool()
    )
    await world.start()
    yield world
    await world.stop()


async def start_service(sims: Simulators, tmp_path: Path) -> asyncio.subprocess.Process:
    settings = sims.env() | {k.upper(): v for k, v in DEMO_SETTINGS.items()}
    settings |= {"CANCEL_GRACE_DAYS": str(SHORT_DAYS), "DESTROY_AFTER_DAYS": str(SHORT_DAYS)}
    env_file = tmp_path / "service.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "--env-file", str(env_file), "run",
        cwd=tmp_path, env=clean_env(), stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp_path / "service.log").open("w"),
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):  # start-up imports take seconds on a busy machine
            try:
                async with session.get(f"http://127.0.0.1:{sims.http_port}/healthz") as answer:
                    if answer.status == 200:  # every part running, the bot polling
                        return process
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("the service did not become healthy")


async def test_the_whole_journey(sims: Simulators, tmp_path: Path) -> None:
    service = await start_service(sims, tmp_path)
    lines: list[str] = []
    view = DemoView(sims.telegram, say=lines.append)
    view.watch("ops", sims.ops_chat_id)

    async def wait(_: timedelta) -> None:
        pass  # the short deadlines pass by themselves

    journey = Journey(
        sims, f"http://127.0.0.1:{sims.http_port}", view, wait,
        grace=timedelta(days=SHORT_DAYS), retention=timedelta(days=SHORT_DAYS),
    )  # fmt: skip
    view.start(journey.status)
    try:
        report = await journey.run()
    finally:
        await view.stop()
        service.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(service.wait(), timeout=30) == 0
    instance_id = report.instance_id

    # The transcripts: what the people saw.
    ops, customer = "\n".join(view.texts("ops")), "\n".join(view.texts("customer"))
    assert "This chat is now connected" in customer and "/login/" in customer
    assert f"{instance_id} is unhealthy: 3 failed health checks" in ops
    assert f"{instance_id} is healthy again after" in ops
    assert "Your OpenClaw gateway is suspended" in customer
    assert f"{instance_id}: suspended → destroyed" in ops
    assert "Your OpenClaw is ready" in report.login_page
    # Nothing secret reached the ops group.
    assert "OPENCLAW_GATEWAY_PASSWORD" not in ops and sims.admin_api_key not in ops

    # The database: the end state, every message delivered, every operation done once.
    db = sqlite3.connect(sims.data_dir / "openclaw-hosted.db")
    db.row_factory = sqlite3.Row
    [row] = db.execute("SELECT * FROM instances").fetchall()
    assert (row["status"], row["desired_state"]) == ("destroyed", "destroyed")
    pending = db.execute("SELECT count(*) FROM notifications WHERE status != 'sent'").fetchone()
    assert pending[0] == 0
    operations = db.execute("SELECT kind, state FROM operations").fetchall()
    assert [tuple(o) for o in operations] == [("restart_gateway", "done")]
    paddle = db.execute("SELECT outcome, count(*) FROM paddle_events GROUP BY outcome")
    assert dict(paddle.fetchall()) == {"applied": 2}
    db.close()

    # The simulated world: no server left, the final snapshot kept, no sandbox behind.
    assert not sims.hetzner.state.servers
    [snapshot] = [i for i in sims.hetzner.state.images.values() if i.type == "snapshot"]
    assert snapshot.labels["instance"] == instance_id and snapshot.labels["kind"] == "final"
    vps_dirs = [p for p in (sims.data_dir / "vps").iterdir() if not p.name.startswith("snap")]
    assert vps_dirs == []
