"""Paddle Billing envelopes, read into the facts the lifecycle records.

Only the fields we use are read; everything else stays in the stored raw payload.
A malformed envelope raises `MalformedEvent`, which the webhook turns into a 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.clock import from_iso


class MalformedEvent(ValueError):
    """The body is not a Paddle notification envelope we can store and apply."""


@dataclass(frozen=True)
class Envelope:
    event_id: str
    event_type: str
    occurred_at: datetime
    notification_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class SubscriptionEvent:
    subscription_id: str
    paddle_customer_id: str
    status: str
    price_ids: tuple[str, ...]
    canceled_at: datetime | None
    paused_at: datetime | None
    scheduled_change: dict[str, Any] | None
    custom_data: dict[str, Any]


@dataclass(frozen=True)
class TransactionEvent:
    transaction_id: str
    paddle_customer_id: str | None
    subscription_id: str | None
    price_ids: tuple[str, ...]
    custom_data: dict[str, Any]


@dataclass(frozen=True)
class AdjustmentEvent:
    adjustment_id: str
    action: str  # refund | chargeback | chargeback_warning | credit | ...
    status: str  # approved | pending_approval | rejected | reversed
    kind: str  # full | partial
    transaction_id: str | None
    subscription_id: str | None
    paddle_customer_id: str | None


@dataclass(frozen=True)
class CustomerEvent:
    paddle_customer_id: str
    email: str
    name: str | None


def parse_envelope(raw: bytes) -> Envelope:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(
            f"body is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
        ) from None
    if not isinstance(body, dict):
        raise MalformedEvent("body is not a JSON object")
    event_id = body.get("event_id")
    event_type = body.get("event_type")
    occurred = body.get("occurred_at")
    data = body.get("data")
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        raise MalformedEvent("event_id missing or not evt_…")
    if not isinstance(event_type, str) or "." not in event_type:
        raise MalformedEvent("event_type missing")
    if not isinstance(data, dict):
        raise MalformedEvent("data missing or not an object")
    try:
        occurred_at = from_iso(str(occurred))
    except ValueError:
        raise MalformedEvent("occurred_at missing or not an ISO 8601 timestamp") from None
    notification_id = body.get("notification_id")
    return Envelope(
        event_id,
        event_type,
        occurred_at,
        notification_id if isinstance(notification_id, str) else None,
        data,
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"data.{key} missing")
    return value


def _optional_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if not value:
        return None
    try:
        return from_iso(str(value))
    except ValueError:
        raise MalformedEvent(f"data.{key} is not a timestamp") from None


def _price_ids(data: dict[str, Any]) -> tuple[str, ...]:
    items = data.get("items") or []
    if not isinstance(items, list):
        raise MalformedEvent("data.items is not a list")
    ids = []
    for item in items:
        price = item.get("price") if isinstance(item, dict) else None
        price_id = price.get("id") if isinstance(price, dict) else None
        if not price_id and isinstance(item, dict):
            price_id = item.get("price_id")  # transaction items may carry only the id
        if isinstance(price_id, str):
            ids.append(price_id)
    return tuple(ids)


def _custom_data(data: dict[str, Any]) -> dict[str, Any]:
    value = data.get("custom_data")
    return value if isinstance(value, dict) else {}


def subscription_event(envelope: Envelope) -> SubscriptionEvent:
    data = envelope.data
    scheduled = data.get("scheduled_change")
    return SubscriptionEvent(
        subscription_id=_text(data, "id"),
        paddle_customer_id=_text(data, "customer_id"),
        status=_text(data, "status"),
        price_ids=_price_ids(data),
        canceled_at=_optional_time(data, "canceled_at"),
        paused_at=_optional_time(data, "paused_at"),
        scheduled_change=scheduled if isinstance(scheduled, dict) else None,
        custom_data=_custom_data(data),
    )


def transaction_event(envelope: Envelope) -> TransactionEvent:
    data = envelope.data
    customer = data.get("customer_id")
    subscription = data.get("subscription_id")
    return TransactionEvent(
        transaction_id=_text(data, "id"),
        paddle_customer_id=customer if isinstance(customer, str) and customer else None,
        subscription_id=subscription if isinstance(subscription, str) and subscription else None,
        price_ids=_price_ids(data),
        custom_data=_custom_data(data),
    )


def adjustment_event(envelope: Envelope) -> AdjustmentEvent:
    data = envelope.data

    def optional(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) and value else None

    return AdjustmentEvent(
        adjustment_id=_text(data, "id"),
        action=_text(data, "action"),
        status=_text(data, "status"),
        kind=optional("type") or "full",
        transaction_id=optional("transaction_id"),
        subscription_id=optional("subscription_id"),
        paddle_customer_id=optional("customer_id"),
    )


def customer_event(envelope: Envelope) -> CustomerEvent:
    data = envelope.data
    name = data.get("name")
    return CustomerEvent(
        paddle_customer_id=_text(data, "id"),
        email=_text(data, "email"),
        name=name if isinstance(name, str) and name else None,
    )


SUBSCRIPTION_EVENTS = frozenset(
    f"subscription.{name}"
    for name in ("created", "activated", "updated", "past_due", "paused", "resumed", "canceled")
)

_PARSERS = {
    **{name: subscription_event for name in SUBSCRIPTION_EVENTS},
    "transaction.completed": transaction_event,
    "adjustment.created": adjustment_event,
    "adjustment.updated": adjustment_event,
    "customer.created": customer_event,
    "customer.updated": customer_event,
}

SUBSCRIPTION_STATUSES = frozenset({"active", "trialing", "past_due", "paused", "canceled"})


def validate(envelope: Envelope) -> None:
    """Check, before anything is stored, that an event we handle carries what we read."""
    parser = _PARSERS.get(envelope.event_type)
    if parser is None:
        return  # stored and logged, never applied
    parsed = parser(envelope)
    if isinstance(parsed, SubscriptionEvent) and parsed.status not in SUBSCRIPTION_STATUSES:
        raise MalformedEvent(f"unknown subscription status {parsed.status!r}")
