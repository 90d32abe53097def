"""Shared fixtures: a fake clock, settings, a real SQLite file and the real aiohttp app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from aiohttp.test_utils import TestClient

from core.billing import Prices
from core.clock import FakeClock
from core.lifecycle import Lifecycle
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.paddle import WebhookSender
from webhooks.context import WebContext
from webhooks.server import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "paddle"
MONTHLY_PRICE = "pri_01gsz8x8sawmvhz1pv30nge1ke"  # the price in Paddle's own samples
LIFETIME_PRICE = "pri_01lifetime0000000000000000"
WEBHOOK_SECRET = "pdl_ntfset_01testsecret_abcdefghijklmnopqrstuvwx"
ADMIN_KEY = "admin-key-0123456789abcdefghijkl"


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def base_settings(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "id_ed25519"
    if not key.exists():
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(key)
        key.chmod(0o600)
    return {
        "public_base_url": "https://openclaw.test",
        "admin_api_key": ADMIN_KEY,
        "paddle_webhook_secrets": f"pdl_ntfset_old_secret_zzzzzzzzzzzz,{WEBHOOK_SECRET}",
        "paddle_api_key": "pdl_sdbx_apikey_test",
        "paddle_price_monthly": MONTHLY_PRICE,
        "paddle_price_lifetime": LIFETIME_PRICE,
        "telegram_bot_token": "123456:TESTTOKEN",
        "ops_chat_id": "-1001234567890",
        "admin_user_ids": "1001,1002",
        "hcloud_token": "hcloud-test-token",
        "ssh_private_key_path": str(key),
        "backend_ips": "127.0.0.1",
        "database_path": str(tmp_path / "db" / "test.db"),
        "http_port": "0",
        # Nothing outside this machine: unset outside services point at a closed port.
        "paddle_api_base": "http://127.0.0.1:9",
        "telegram_api_base": "http://127.0.0.1:9",
        "hcloud_endpoint": "http://127.0.0.1:9/v1",
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values = base_settings(tmp_path) | {k: str(v) for k, v in overrides.items()}
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "db" / "test.db")
    yield database
    await database.close()


@dataclass
class Backend:
    """The real web app over HTTP on loopback, with its parts at hand for assertions."""

    client: TestClient[Any, Any]
    context: WebContext
    sender: WebhookSender

    @property
    def lifecycle(self) -> Lifecycle:
        return self.context.core.lifecycle

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"X-API-Key": ADMIN_KEY, **kwargs.pop("headers", {})}
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            return response.status, await response.json()

    async def instances(self) -> list[dict[str, Any]]:
        status, body = await self.admin("GET", "/api/instances")
        assert status == 200
        result: list[dict[str, Any]] = body["instances"]
        return result


@pytest.fixture
async def backend(
    aiohttp_client: Any, db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> Backend:
    settings = make_settings()
    core = build_core(
        db,
        clock,
        timings=PolicyTimings(),
        prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
        lifetime_cap=settings.lifetime_cap,
    )
    context = WebContext(settings, core)
    client = await aiohttp_client(create_app(context))
    url = str(client.make_url("/api/webhook/paddle"))
    sender = WebhookSender(url, WEBHOOK_SECRET, max_attempts=1, now=lambda: clock.now().timestamp())
    return Backend(client, context, sender)
