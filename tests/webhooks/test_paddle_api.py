"""The customer's email comes from Paddle's API, later if it is down."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from core.clock import FakeClock
from sim.paddle import PaddleSim, envelope, paddle_id, subscription_data
from tests.conftest import MONTHLY_PRICE, Backend
from webhooks.paddle_api import ContactSync, PaddleApiError, PaddleCustomers


@pytest.fixture
async def paddle() -> AsyncIterator[PaddleSim]:
    sim = PaddleSim(api_key="pdl_sdbx_apikey_test")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_event_applies_while_paddle_is_down_and_email_follows(
    backend: Backend, paddle: PaddleSim, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    customer = paddle.add_customer("linus@example.com", "Linus")
    paddle.failures = 2  # an outage: the next two lookups answer 503
    sync = ContactSync(
        backend.context.db,
        clock,
        backend.context.core.customers,
        PaddleCustomers(paddle.url, paddle.api_key, session),
    )
    event = envelope(
        "subscription.created",
        subscription_data(paddle_id("sub"), customer.id, "active", MONTHLY_PRICE),
        occurred_at=clock.now(),
    )
    status, _ = await backend.sender.post(json.dumps(event).encode())
    assert status == 200
    [instance] = await backend.instances()
    assert instance["customer_email"] == "" and instance["status"] == "provisioning"

    assert await sync.run_once() == 0  # 503
    assert await sync.run_once() == 0  # backing off: not due yet, no request made
    assert len(paddle.requests) == 1
    clock.advance(timedelta(seconds=5))
    assert await sync.run_once() == 0  # 503 again
    clock.advance(timedelta(seconds=30))
    assert await sync.run_once() == 1
    [instance] = await backend.instances()
    assert instance["customer_email"] == "linus@example.com"
    assert instance["customer_name"] == "Linus"
    assert await sync.run_once() == 0 and len(paddle.requests) == 3  # done: no more lookups


async def test_client_errors_carry_paddles_code(
    paddle: PaddleSim, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(PaddleApiError) as missing:
        await PaddleCustomers(paddle.url, paddle.api_key, session).get("ctm_nobody")
    assert (missing.value.status, missing.value.code) == (404, "entity_not_found")
    with pytest.raises(PaddleApiError) as forbidden:
        await PaddleCustomers(paddle.url, "pdl_wrong", session).get("ctm_nobody")
    assert forbidden.value.code == "forbidden"
    assert "pdl_wrong" not in str(forbidden.value)
