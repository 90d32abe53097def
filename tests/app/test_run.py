"""`openclaw-hosted run` as a real process: a signed Paddle event becomes an instance."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sim.paddle import PaddleSim, WebhookSender, envelope, paddle_id, subscription_data
from tests.conftest import ADMIN_KEY, MONTHLY_PRICE, WEBHOOK_SECRET, base_settings

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def paddle() -> AsyncIterator[PaddleSim]:
    sim = PaddleSim(api_key="pdl_sdbx_apikey_test")
    await sim.start()
    yield sim
    await sim.stop()


async def wait_for(url: str, session: aiohttp.ClientSession, attempts: int = 1200) -> None:
    for _ in range(attempts):
        try:
            async with session.get(url) as response:
                if response.status in (200, 503):  # serving (503: a part is down)
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def instances(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/instances", headers={"X-API-Key": ADMIN_KEY}) as r:
        body = await r.json()
    result: list[dict[str, Any]] = body["instances"]
    return result


async def test_signed_subscription_created_becomes_a_provisioning_instance(
    tmp_path: Path, paddle: PaddleSim
) -> None:
    customer = paddle.add_customer("grace@example.com", "Grace Hopper")
    port = free_port()
    settings = {k.upper(): v for k, v in base_settings(tmp_path).items()}
    settings |= {"HTTP_PORT": str(port), "PADDLE_API_BASE": paddle.url}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "run",
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_for(f"{base}/healthz", session)
            async with session.get(f"{base}/healthz") as response:
                health = await response.json()
            # Telegram is out of reach here: the backend says so, and that all else runs.
            assert response.status == 503 and health["ok"] is False
            assert health["parts"]["bot"] == {"ok": False, "state": "starting"}
            assert health["parts"]["reconciler"]["ok"] and health["parts"]["outbox"]["ok"]
            assert health["parts"]["scheduler"]["running"] is True
            assert set(health["parts"]["scheduler"]["jobs"]) == {
                "health", "billing_clock", "vps_status", "resources", "quiet_restarts",
                "weekly_snapshots", "prices", "snapshot_retention", "database_backup",
            }  # fmt: skip
            sender = WebhookSender(f"{base}/api/webhook/paddle", WEBHOOK_SECRET)
            event = envelope(
                "subscription.created",
                subscription_data(paddle_id("sub"), customer.id, "active", MONTHLY_PRICE),
            )
            status, answer = await sender.post(json.dumps(event).encode())
            assert (status, answer["outcome"]) == (200, "applied")
            for _ in range(100):  # the email arrives from Paddle's API right after the event
                listed = await instances(session, base)
                if listed and listed[0]["customer_email"]:
                    break
                await asyncio.sleep(0.02)
            [instance] = listed
            assert instance["status"] == "provisioning"
            assert instance["desired_state"] == "active"
            assert instance["customer_email"] == "grace@example.com"

            replay = {**event, "notification_id": paddle_id("ntf")}
            status, answer = await sender.post(json.dumps(replay).encode())
            assert status == 200 and answer["duplicate"] is True
            assert await instances(session, base) == [instance]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "stopped" in log
    for secret in (ADMIN_KEY, WEBHOOK_SECRET, "pdl_sdbx_apikey_test"):
        assert secret not in log


def test_a_second_copy_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    from app.service import AlreadyRunning, acquire_lock

    database = tmp_path / "db" / "x.db"
    first = acquire_lock(database)
    try:
        with pytest.raises(AlreadyRunning, match="another openclaw-hosted is running"):
            acquire_lock(database)
    finally:
        first.close()
    acquire_lock(database).close()  # released with its holder
