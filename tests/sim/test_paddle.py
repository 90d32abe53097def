"""The Paddle stand-in: its signatures verify independently; it retries like Paddle."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from sim.paddle import (
    PaddleSim,
    WebhookSender,
    envelope,
    paddle_id,
    signature_header,
    subscription_data,
)

SECRET = "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_test"


def test_signature_verifies_with_an_independent_hmac() -> None:
    body = json.dumps(
        envelope(
            "subscription.created",
            subscription_data(paddle_id("sub"), paddle_id("ctm"), "active", "pri_x"),
        )
    ).encode()
    header = signature_header(SECRET, body, 1_700_000_000)
    ts, h1 = (part.split("=", 1)[1] for part in header.split(";"))
    expected = hmac.new(SECRET.encode(), ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    assert ts == "1700000000" and hmac.compare_digest(h1, expected)


def test_envelope_looks_like_paddles() -> None:
    event = envelope("subscription.created", {"id": "sub_x"})
    assert event["event_id"].startswith("evt_01") and len(event["event_id"]) == 30
    assert event["notification_id"].startswith("ntf_01")
    assert event["occurred_at"].endswith("Z") and "." in event["occurred_at"]


@pytest.fixture
async def flaky_receiver() -> AsyncIterator[tuple[TestServer, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"event_id": body["event_id"], "notification_id": body["notification_id"]})
        return web.json_response({}, status=500 if len(seen) < 3 else 200)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


async def test_retries_until_2xx_with_new_notification_ids(
    flaky_receiver: tuple[TestServer, list[dict[str, str]]],
) -> None:
    server, seen = flaky_receiver
    sender = WebhookSender(
        str(server.make_url("/hook")), SECRET, max_attempts=5, retry_delay_s=0.001
    )
    delivery = await sender.deliver(envelope("subscription.created", {"id": "sub_x"}))
    assert (delivery.status, delivery.attempts) == (200, 3)
    assert len({s["event_id"] for s in seen}) == 1
    assert len({s["notification_id"] for s in seen}) == 3


async def test_deliver_all_reverses_and_duplicates(
    flaky_receiver: tuple[TestServer, list[dict[str, str]]],
) -> None:
    server, seen = flaky_receiver
    seen.extend([{"event_id": "", "notification_id": ""}] * 2)  # make the receiver answer 200
    sender = WebhookSender(str(server.make_url("/hook")), SECRET)
    events = [
        envelope("subscription.created", {"id": "a"}),
        envelope("subscription.activated", {"id": "a"}),
    ]
    await sender.deliver_all(events, reverse=True, duplicates=1)
    ids = [s["event_id"] for s in seen[2:]]
    assert ids == [events[1]["event_id"]] * 2 + [events[0]["event_id"]] * 2


async def test_customers_list_pages_behind_the_api_key() -> None:
    sim = PaddleSim(api_key="pdl_sdbx_apikey_list")
    await sim.start()
    try:
        for n in range(3):
            sim.add_customer(f"c{n}@example.test")
        async with ClientSession() as http:
            good = {"Authorization": "Bearer pdl_sdbx_apikey_list"}
            async with http.get(f"{sim.url}/customers?per_page=1", headers=good) as resp:
                body = await resp.json()
                assert resp.status == 200 and len(body["data"]) == 1
                assert body["meta"]["pagination"]["has_more"] is True
                assert body["meta"]["pagination"]["estimated_total"] == 3
            async with http.get(f"{sim.url}/customers?per_page=0", headers=good) as resp:
                assert resp.status == 400
            bad = {"Authorization": "Bearer pdl_sdbx_apikey_wrong"}
            async with http.get(f"{sim.url}/customers", headers=bad) as resp:
                assert resp.status == 403
                assert (await resp.json())["error"]["code"] == "forbidden"
            async with http.get(f"{sim.url}/customers") as resp:
                assert resp.status == 401
    finally:
        await sim.stop()
