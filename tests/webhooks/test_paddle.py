"""POST /api/webhook/paddle over real HTTP into a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from core.clock import FakeClock
from sim.paddle import (
    adjustment_data,
    envelope,
    paddle_id,
    paddle_time,
    signature_header,
    subscription_data,
    transaction_data,
)
from tests.conftest import FIXTURES, LIFETIME_PRICE, MONTHLY_PRICE, WEBHOOK_SECRET, Backend, sample

SUBSCRIPTION_SAMPLES = [
    "created",
    "activated",
    "updated",
    "past_due",
    "paused",
    "resumed",
    "canceled",
]
SUB_ID = "sub_01h7ht5z5wdg9pz18jx1fagp8k"


async def post(backend: Backend, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await backend.sender.post(json.dumps(event).encode())


async def rows(backend: Backend, sql: str, *params: Any) -> list[Any]:
    return list(await backend.context.db.fetch_all(sql, params))


@pytest.mark.parametrize(
    "name",
    [f"subscription.{n}.json" for n in SUBSCRIPTION_SAMPLES]
    + [
        "transaction.completed.json",
        "transaction.paid.json",
        "customer.created.signed-standard.json",
        "customer.created.signed-special-chars.json",
    ],
)
async def test_every_real_sample_resigned_is_accepted(backend: Backend, name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    status, answer = await backend.sender.post(body)
    assert status == 200, answer
    stored = await rows(backend, "SELECT payload, processed_at FROM paddle_events")
    assert len(stored) == 1 and stored[0]["processed_at"] is not None
    assert stored[0]["payload"].encode() == body  # the raw bytes, as signed


async def test_subscription_created_makes_one_provisioning_instance(backend: Backend) -> None:
    status, answer = await post(backend, sample("subscription.created.json"))
    assert (status, answer["outcome"]) == (200, "applied")
    [instance] = await backend.instances()
    assert instance["status"] == "provisioning"
    assert instance["desired_state"] == "active"
    assert instance["plan"] == "monthly" and instance["subscription_id"] == SUB_ID
    assert instance["server_name"] == "oc-" + instance["instance_id"].removeprefix("inst_")
    events = await rows(backend, "SELECT actor, event_type FROM events")
    assert ("paddle", "subscription.created") in [tuple(e) for e in events]


async def test_duplicate_event_id_has_no_second_effect(backend: Backend) -> None:
    event = sample("subscription.created.json")
    await post(backend, event)
    replay = {**event, "notification_id": paddle_id("ntf")}  # Paddle's replay: new ntf_, same evt_
    status, answer = await post(backend, replay)
    assert status == 200 and answer["duplicate"] is True
    assert len(await backend.instances()) == 1
    assert len(await rows(backend, "SELECT 1 FROM paddle_events")) == 1
    assert (
        len(await rows(backend, "SELECT 1 FROM events WHERE event_type = 'instance_created'")) == 1
    )


async def test_activated_before_created(backend: Backend) -> None:
    await post(backend, sample("subscription.activated.json"))
    _, answer = await post(backend, sample("subscription.created.json"))
    assert answer["outcome"] == "stale"
    [instance] = await backend.instances()
    assert instance["desired_state"] == "active"


async def test_canceled_before_updated_stays_canceled(backend: Backend, clock: FakeClock) -> None:
    sub_id, customer = paddle_id("sub"), paddle_id("ctm")
    created = envelope(
        "subscription.created",
        subscription_data(sub_id, customer, "active", MONTHLY_PRICE),
        occurred_at=clock.now(),
    )
    updated = envelope(
        "subscription.updated",
        subscription_data(
            sub_id,
            customer,
            "active",
            MONTHLY_PRICE,
            scheduled_change={"action": "cancel", "effective_at": "2026-12-01T00:00:00Z"},
        ),
        occurred_at=clock.now() + timedelta(seconds=1),
    )
    canceled = envelope(
        "subscription.canceled",
        subscription_data(
            sub_id, customer, "canceled", MONTHLY_PRICE, canceled_at=paddle_time(clock.now())
        ),
        occurred_at=clock.now() + timedelta(seconds=2),
    )
    await post(backend, created)
    await post(backend, canceled)
    _, answer = await post(backend, updated)  # arrives last, happened before the cancel
    assert answer["outcome"] == "stale"
    [sub] = await rows(backend, "SELECT status FROM subscriptions")
    assert sub["status"] == "canceled"
    [instance] = await backend.instances()
    assert instance["desired_state"] == "active"  # the 3-day grace
    clock.advance(timedelta(days=3, seconds=3))
    assert await backend.lifecycle.reevaluate_due("policy") == 1
    [instance] = await backend.instances()
    assert instance["desired_state"] == "suspended"


async def test_the_whole_sample_sequence_in_reverse(backend: Backend) -> None:
    events = [sample(f"subscription.{n}.json") for n in SUBSCRIPTION_SAMPLES]
    for event in reversed(events):
        assert (await post(backend, event))[0] == 200
    # The newest (canceled) applied first; everything older changed nothing.
    outcomes = await rows(backend, "SELECT outcome FROM paddle_events")
    assert sorted(o["outcome"] for o in outcomes) == ["applied"] + ["stale"] * 6
    assert await backend.instances() == []  # a canceled subscription makes no new instance


async def test_past_due_warns_customer_and_ops(backend: Backend) -> None:
    await post(backend, sample("subscription.created.json"))
    await post(backend, sample("subscription.past_due.json"))
    kinds = await rows(backend, "SELECT recipient, kind FROM notifications WHERE kind = 'past_due'")
    assert sorted(tuple(k) for k in kinds) == [("customer", "past_due"), ("ops", "past_due")]
    [instance] = await backend.instances()
    assert instance["desired_state"] == "active"  # 7 days of grace


async def test_bad_signature_is_401_and_stores_nothing(backend: Backend) -> None:
    body = json.dumps(sample("subscription.created.json")).encode()
    for header in ["", "ts=1;h1=00", signature_header("wrong-secret", body, 0)]:
        status, answer = await backend.sender.post(body, header=header)
        assert status == 401 and answer["error"]["code"] == "invalid_signature"
    assert await rows(backend, "SELECT 1 FROM paddle_events") == []


async def test_stale_timestamp_is_refused(backend: Backend, clock: FakeClock) -> None:
    body = json.dumps(sample("subscription.created.json")).encode()
    status, _ = await backend.sender.post(body, timestamp=int(clock.now().timestamp()) - 301)
    assert status == 401
    assert await rows(backend, "SELECT 1 FROM paddle_events") == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"event_type": "subscription.created"}',
        b'{"event_id": "evt_1", "event_type": "subscription.created", "occurred_at": "yesterday",'
        b' "data": {}}',
        b'{"event_id": "evt_1", "event_type": "subscription.created",'
        b' "occurred_at": "2026-01-01T00:00:00Z", "data": {"id": "sub_1"}}',
        b"\xff\xfe",
    ],
)
async def test_malformed_body_is_400_and_stores_nothing(backend: Backend, body: bytes) -> None:
    status, answer = await backend.sender.post(body)
    assert status == 400 and answer["error"]["code"] == "invalid_input"
    assert await rows(backend, "SELECT 1 FROM paddle_events") == []


async def test_body_over_one_mebibyte_is_413(backend: Backend) -> None:
    status, answer = await backend.sender.post(b"{" + b" " * (1024 * 1024) + b"}")
    assert status == 413 and answer["error"]["code"] == "body_too_large"


async def test_lifetime_purchase_and_refund(backend: Backend, clock: FakeClock) -> None:
    txn = paddle_id("txn")
    await post(
        backend,
        envelope("transaction.completed", transaction_data(txn, "ctm_lifetime1", LIFETIME_PRICE)),
    )
    [instance] = await backend.instances()
    assert instance["plan"] == "lifetime" and instance["desired_state"] == "active"
    await post(backend, envelope("adjustment.created", adjustment_data(txn, "ctm_lifetime1")))
    [instance] = await backend.instances()
    assert instance["desired_state"] == "suspended"
    clock.advance(timedelta(days=31))
    await backend.lifecycle.reevaluate_due("policy")
    [instance] = await backend.instances()
    assert instance["desired_state"] == "destroyed"


async def test_pending_and_partial_refunds_do_not_suspend(backend: Backend) -> None:
    txn = paddle_id("txn")
    await post(
        backend, envelope("transaction.completed", transaction_data(txn, "ctm_x", LIFETIME_PRICE))
    )
    await post(
        backend,
        envelope("adjustment.created", adjustment_data(txn, "ctm_x", status="pending_approval")),
    )
    await post(
        backend, envelope("adjustment.updated", adjustment_data(txn, "ctm_x", kind="partial"))
    )
    [instance] = await backend.instances()
    assert instance["desired_state"] == "active"


async def test_lifetime_over_the_cap_is_honoured_and_alerted(backend: Backend) -> None:
    backend.context.core.billing.lifetime_cap = 1
    for customer in ("ctm_a", "ctm_b"):
        await post(
            backend,
            envelope(
                "transaction.completed",
                transaction_data(paddle_id("txn"), customer, LIFETIME_PRICE),
            ),
        )
    assert len(await backend.instances()) == 2
    alerts = await rows(backend, "SELECT body FROM notifications WHERE kind = 'lifetime_cap'")
    assert len(alerts) == 1 and "over the cap of 1" in alerts[0]["body"]


async def test_repayment_after_destruction_gets_a_new_instance(
    backend: Backend, clock: FakeClock
) -> None:
    sub_id, customer = paddle_id("sub"), paddle_id("ctm")
    await post(
        backend,
        envelope(
            "subscription.created",
            subscription_data(sub_id, customer, "active", MONTHLY_PRICE),
            occurred_at=clock.now(),
        ),
    )
    clock.advance(timedelta(seconds=1))
    await post(
        backend,
        envelope(
            "subscription.paused",
            subscription_data(sub_id, customer, "paused", MONTHLY_PRICE),
            occurred_at=clock.now(),
        ),
    )
    clock.advance(timedelta(days=31))
    await backend.lifecycle.reevaluate_due("policy")
    [old] = await backend.instances()
    assert old["desired_state"] == "destroyed"
    await post(
        backend,
        envelope(
            "subscription.resumed",
            subscription_data(sub_id, customer, "active", MONTHLY_PRICE),
            occurred_at=clock.now(),
        ),
    )
    instances = await backend.instances()
    assert len(instances) == 2
    new = next(i for i in instances if i["instance_id"] != old["instance_id"])
    assert new["desired_state"] == "active" and new["subscription_id"] == sub_id


async def test_unknown_price_makes_no_instance_and_alerts(backend: Backend) -> None:
    await post(
        backend,
        envelope(
            "subscription.created",
            subscription_data(paddle_id("sub"), paddle_id("ctm"), "active", "pri_somethingelse"),
        ),
    )
    assert await backend.instances() == []
    assert await rows(backend, "SELECT 1 FROM notifications WHERE kind = 'unknown_price'")


async def test_customer_event_fills_the_email(backend: Backend) -> None:
    customer = sample("customer.created.signed-standard.json")["data"]
    event = sample("subscription.created.json")
    event["data"]["customer_id"] = customer["id"]
    await post(backend, event)
    await backend.sender.post((FIXTURES / "customer.created.signed-standard.json").read_bytes())
    [instance] = await backend.instances()
    assert instance["customer_email"] == "blackhole+verification2@paddle.com"
    assert instance["customer_name"] == "John Doe"


async def test_secret_rotation_old_and_new_secret_both_accepted(backend: Backend) -> None:
    ts = int(backend.context.clock.now().timestamp())
    for secret, name in (
        ("pdl_ntfset_old_secret_zzzzzzzzzzzz", "subscription.created.json"),
        (WEBHOOK_SECRET, "subscription.activated.json"),
    ):
        body = json.dumps(sample(name)).encode()
        status, _ = await backend.sender.post(body, header=signature_header(secret, body, ts))
        assert status == 200, secret
    assert len(await rows(backend, "SELECT 1 FROM paddle_events")) == 2


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (FIXTURES / "entity-data-only").glob("*.data.json"))
)
async def test_richer_2024_data_shapes_are_accepted(
    backend: Backend, clock: FakeClock, name: str
) -> None:
    data = json.loads((FIXTURES / "entity-data-only" / name).read_text())
    event_type = name.removesuffix(".data.json")
    for item in data.get("items", []):
        if "price" in item and event_type.startswith("subscription."):
            item["price"]["id"] = MONTHLY_PRICE  # our product's price, their shape
    status, answer = await post(backend, envelope(event_type, data, occurred_at=clock.now()))
    assert status == 200, answer
    expected = "applied" if event_type.startswith("subscription.") else "stored"
    assert answer["outcome"] == expected


async def test_an_event_stored_before_a_crash_is_applied_at_start_up(backend: Backend) -> None:
    body = json.dumps(sample("subscription.created.json")).encode()
    await backend.context.core.inbox.accept(body)  # committed, then the process died
    assert await backend.instances() == []
    assert await backend.context.core.inbox.apply_pending() == 1
    assert len(await backend.instances()) == 1
    assert await backend.context.core.inbox.apply_pending() == 0


async def test_concurrent_duplicate_deliveries_apply_once(backend: Backend) -> None:
    body = json.dumps(sample("subscription.created.json")).encode()
    results = await asyncio.gather(*(backend.sender.post(body) for _ in range(8)))
    assert all(status == 200 for status, _ in results)
    assert sum(1 for _, answer in results if answer.get("outcome") == "applied") == 1
    assert len(await backend.instances()) == 1
