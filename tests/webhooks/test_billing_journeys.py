"""Billing journeys over real HTTP, as an operator would meet them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.clock import FakeClock
from sim.paddle import (
    adjustment_data,
    envelope,
    paddle_id,
    signature_header,
    subscription_data,
    transaction_data,
)
from tests.conftest import ADMIN_KEY, LIFETIME_PRICE, MONTHLY_PRICE, WEBHOOK_SECRET, Backend


class Subscription:
    """One customer's subscription, whose events happen on the test's clock."""

    def __init__(self, backend: Backend, clock: FakeClock) -> None:
        self.backend, self.clock = backend, clock
        self.id, self.customer = paddle_id("sub"), paddle_id("ctm")

    async def send(self, event_type: str, status: str, **extra: Any) -> dict[str, Any]:
        self.clock.advance(timedelta(seconds=1))
        data = subscription_data(self.id, self.customer, status, MONTHLY_PRICE, **extra)
        event = envelope(event_type, data, occurred_at=self.clock.now())
        code, answer = await self.backend.sender.post(json.dumps(event).encode())
        assert code == 200, answer
        return answer

    async def pay(self) -> None:
        self.clock.advance(timedelta(seconds=1))
        data = transaction_data(
            paddle_id("txn"), self.customer, MONTHLY_PRICE, subscription_id=self.id
        )
        event = envelope("transaction.completed", data, occurred_at=self.clock.now())
        assert (await self.backend.sender.post(json.dumps(event).encode()))[0] == 200


async def states(backend: Backend) -> list[str]:
    return [
        i["desired_state"] for i in sorted(await backend.instances(), key=lambda i: i["created_at"])
    ]


async def test_admin_destroy_survives_renewals(backend: Backend, clock: FakeClock) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    [instance] = await backend.instances()
    await backend.admin("POST", f"/api/instances/{instance['instance_id']}/destroy")
    await sub.send("subscription.updated", "active")  # the next month's renewal
    await sub.pay()
    assert await states(backend) == ["destroyed"]
    alerts = await backend.context.db.fetch_all("SELECT kind FROM notifications")
    assert "paid_after_admin_destroy" not in [a["kind"] for a in alerts]  # nothing started paying


async def test_past_due_suspends_on_day_seven_and_payment_restores(
    backend: Backend, clock: FakeClock
) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    await sub.send("subscription.past_due", "past_due")
    clock.advance(timedelta(days=6, hours=23))
    await backend.lifecycle.reevaluate_due("policy")
    assert await states(backend) == ["active"]
    clock.advance(timedelta(hours=2))
    await backend.lifecycle.reevaluate_due("policy")
    assert await states(backend) == ["suspended"]
    await sub.send("subscription.updated", "active")  # paid at last
    assert await states(backend) == ["active"]


async def test_past_due_after_destruction_makes_no_instance(
    backend: Backend, clock: FakeClock
) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    await sub.send("subscription.past_due", "past_due")
    clock.advance(timedelta(days=38))
    await backend.lifecycle.reevaluate_due("policy")
    await sub.send("subscription.updated", "past_due")  # Paddle's dunning goes on
    assert await states(backend) == ["destroyed"]
    await sub.send("subscription.updated", "active")  # and then they pay: a new instance
    assert await states(backend) == ["destroyed", "active"]


async def test_admin_resume_of_billing_suspension_lapses_on_the_next_event(
    backend: Backend, clock: FakeClock
) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    await sub.send("subscription.paused", "paused")
    [instance] = await backend.instances()
    assert instance["desired_state"] == "suspended"
    status, body = await backend.admin("POST", f"/api/instances/{instance['instance_id']}/resume")
    assert (status, body["desired_state"]) == (202, "active")
    clock.advance(timedelta(days=3))
    await backend.lifecycle.reevaluate_due("policy")
    assert await states(backend) == ["active"]  # the override holds
    await sub.send("subscription.updated", "paused")  # billing speaks again
    assert await states(backend) == ["suspended"]


async def test_a_refund_that_arrives_before_its_purchase_still_applies(
    backend: Backend, clock: FakeClock
) -> None:
    txn, customer = paddle_id("txn"), paddle_id("ctm")
    refund = envelope("adjustment.updated", adjustment_data(txn, customer), clock.now())
    purchase = envelope(
        "transaction.completed", transaction_data(txn, customer, LIFETIME_PRICE), clock.now()
    )
    _, answer = await backend.sender.post(json.dumps(refund).encode())
    assert answer["outcome"] == "deferred"
    await backend.sender.post(json.dumps(purchase).encode())
    assert await states(backend) == ["suspended"]
    row = await backend.context.db.fetch_one(
        "SELECT processed_at, outcome FROM paddle_events WHERE event_id = ?", (refund["event_id"],)
    )
    assert row is not None and row["processed_at"] is not None and row["outcome"] == "applied"


async def test_a_chargeback_clears_when_reversed_or_paid_again(
    backend: Backend, clock: FakeClock
) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    txn = paddle_id("txn")
    for action, expected in (("chargeback", "suspended"), ("chargeback_reverse", "active")):
        data = adjustment_data(txn, sub.customer, action=action, subscription_id=sub.id)
        await backend.sender.post(json.dumps(envelope("adjustment.created", data)).encode())
        assert await states(backend) == [expected]
    data = adjustment_data(txn, sub.customer, action="chargeback", subscription_id=sub.id)
    await backend.sender.post(json.dumps(envelope("adjustment.created", data)).encode())
    assert await states(backend) == ["suspended"]
    await sub.pay()
    assert await states(backend) == ["active"]


async def test_admin_reason_stays_internal(backend: Backend, clock: FakeClock) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    [instance] = await backend.instances()
    await backend.admin(
        "POST", f"/api/instances/{instance['instance_id']}/suspend", json={"reason": "fraud check"}
    )
    rows = await backend.context.db.fetch_all(
        "SELECT recipient, body, ref FROM notifications WHERE kind = 'instance_suspended'"
    )
    by = {r["recipient"]: (r["body"] or "") + (r["ref"] or "") for r in rows}
    assert "fraud check" in by["ops"] and "fraud check" not in by["customer"]


@pytest.mark.parametrize(
    "header",
    [
        "ts=\u00b2;h1=00",
        "ts=" + "9" * 5000 + ";h1=00",
        "ts=1;h1=\u00e9\u00e9",
        "ts=1;h1=" + "a" * 64,
    ],
)
async def test_hostile_signature_headers_are_401(
    backend: Backend, clock: FakeClock, header: str
) -> None:
    status, answer = await backend.sender.post(b"{}", header=header)
    assert status == 401 and answer["error"]["code"] == "invalid_signature"


async def test_hostile_admin_input_is_4xx(backend: Backend, clock: FakeClock) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/instances?page=\u00b2", {}),
        ("GET", "/api/instances?per_page=" + "9" * 5000, {}),
        ("GET", "/api/instances/a%0Ab", {}),
        ("POST", "/api/provision", {"data": b"[" * 100_000, "headers": {"X-API-Key": ADMIN_KEY}}),
        ("POST", "/api/provision", {"data": b'{"customer_email": ' + b"9" * 5000 + b"}"}),
    ]
    for method, path, kwargs in cases:
        clock.advance(timedelta(seconds=1))
        status, body = await backend.admin(method, path, **kwargs)
        assert 400 <= status < 500 and "error" in body, (path, status)
    async with backend.client.get(
        "/api/instances", headers={"X-API-Key": "\u00e9" * 30}
    ) as response:
        assert response.status == 401


async def test_far_future_timestamps_are_400(backend: Backend) -> None:
    data = subscription_data(paddle_id("sub"), paddle_id("ctm"), "active", MONTHLY_PRICE)
    event = envelope("subscription.created", data)
    event["occurred_at"] = "9999-12-31T23:59:59-05:00"
    body = json.dumps(event).encode()
    ts = int(backend.context.clock.now().timestamp())
    status, _ = await backend.sender.post(body, header=signature_header(WEBHOOK_SECRET, body, ts))
    assert status == 400
