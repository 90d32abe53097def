"""Paddle events in, billing facts out: the webhook's store-then-apply path.

`accept` commits the raw event (durably) before the webhook answers 200; `apply`
applies it exactly once, in one transaction that also marks it processed, so a
crash between the two only means `apply_pending` finishes the job at start-up.
Events older than the last applied one for their subscription change nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from core.clock import from_iso, to_iso
from core.ids import token_hash
from core.journal import notify_customer, notify_ops, record_event
from core.lifecycle import Lifecycle, dumps, live_instances
from core.models import ACTOR_PADDLE, Plan, SubscriptionStatus
from core.models import SubscriptionStatus as Sub
from core.paddle_events import (
    Envelope,
    MalformedEvent,
    adjustment_event,
    customer_event,
    parse_envelope,
    subscription_event,
    transaction_event,
    validate,
)
from db.records import fetch_one, insert, update

log = logging.getLogger(__name__)

SUBSCRIPTION_EVENTS = frozenset(
    f"subscription.{name}"
    for name in ("created", "activated", "updated", "past_due", "paused", "resumed", "canceled")
)


@dataclass(frozen=True)
class Prices:
    monthly: str
    lifetime: str


@dataclass(frozen=True)
class LifetimeCap:
    limit: int


class Billing:
    def __init__(self, lifecycle: Lifecycle, prices: Prices, lifetime_cap: int) -> None:
        self.lifecycle = lifecycle
        self.db = lifecycle.db
        self.clock = lifecycle.clock
        self.prices = prices
        self.lifetime_cap = lifetime_cap

    async def accept(self, raw: bytes) -> tuple[Envelope, bool]:
        """Store a verified event durably. Returns (envelope, is_new); raises MalformedEvent."""
        envelope = parse_envelope(raw)
        validate(envelope)
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO paddle_events (event_id, event_type, occurred_at, "
                "notification_id, payload, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    envelope.event_id,
                    envelope.event_type,
                    to_iso(envelope.occurred_at),
                    envelope.notification_id,
                    raw.decode("utf-8", "replace"),
                    to_iso(self.clock.now()),
                ),
            )
            is_new = cursor.rowcount == 1
        return envelope, is_new

    async def apply(self, event_id: str) -> str | None:
        """Apply a stored event once. Returns its outcome, or None if already processed."""
        try:
            async with self.db.transaction() as conn:
                row = await fetch_one(
                    conn, "SELECT * FROM paddle_events WHERE event_id = ?", (event_id,)
                )
                if row is None or row["processed_at"] is not None:
                    return None
                envelope = parse_envelope(row["payload"].encode())
                outcome = await self._dispatch(conn, envelope)
                await update(
                    conn,
                    "paddle_events",
                    "event_id",
                    event_id,
                    {
                        "processed_at": to_iso(self.clock.now()),
                        "outcome": outcome,
                        "error": None,
                    },
                )
        except Exception as exc:
            async with self.db.transaction() as conn:
                await update(
                    conn,
                    "paddle_events",
                    "event_id",
                    event_id,
                    {"error": f"{type(exc).__name__}: {exc}"[:1000]},
                )
            log.exception("paddle event %s failed to apply", event_id)
            return "error"
        log.info("paddle event %s %s: %s", envelope.event_type, event_id, outcome)
        self.lifecycle.wake()
        return outcome

    async def apply_pending(self) -> int:
        """Apply every stored event not yet processed (crash recovery), oldest first."""
        rows = await self.db.fetch_all(
            "SELECT event_id FROM paddle_events WHERE processed_at IS NULL ORDER BY occurred_at"
        )
        for row in rows:
            await self.apply(row["event_id"])
        return len(rows)

    async def _dispatch(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        kind = envelope.event_type
        if kind in SUBSCRIPTION_EVENTS:
            return await self._subscription(conn, envelope)
        if kind == "transaction.completed":
            return await self._transaction(conn, envelope)
        if kind in ("adjustment.created", "adjustment.updated"):
            return await self._adjustment(conn, envelope)
        if kind in ("customer.created", "customer.updated"):
            return await self._customer(conn, envelope)
        return "stored"

    # -- subscriptions --------------------------------------------------------------------

    def _plan(self, price_ids: tuple[str, ...]) -> Plan | None:
        if self.prices.monthly in price_ids:
            return Plan.MONTHLY
        return None

    async def _subscription(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        event = subscription_event(envelope)
        now = self.clock.now()
        try:
            status = SubscriptionStatus(event.status)
        except ValueError:
            raise MalformedEvent(f"unknown subscription status {event.status!r}") from None
        existing = await fetch_one(
            conn, "SELECT * FROM subscriptions WHERE id = ?", (event.subscription_id,)
        )
        if (
            existing
            and existing["occurred_at"]
            and from_iso(existing["occurred_at"]) >= envelope.occurred_at
        ):
            return "stale"
        plan = self._plan(event.price_ids)
        if existing is None and plan is None:
            await notify_ops(
                conn,
                now,
                "unknown_price",
                f"subscription {event.subscription_id} has no known price "
                f"({', '.join(event.price_ids) or 'no items'}): no instance made",
            )
            return "ignored"
        customer_id = await self._customer_for(
            conn, event.paddle_customer_id, existing, event.custom_data
        )
        facts = {
            "status": status.value,
            "price_ids": dumps(list(event.price_ids)),
            "occurred_at": to_iso(envelope.occurred_at),
            "changed_at": to_iso(now),
            "past_due_since": _past_due_since(existing, status, now),
            "paused_at": _since(existing, "paused_at", status is Sub.PAUSED, now),
            "canceled_at": _since(existing, "canceled_at", status is Sub.CANCELED, now),
            "scheduled_change": dumps(event.scheduled_change) if event.scheduled_change else None,
            "updated_at": to_iso(now),
        }
        if existing is None:
            await insert(
                conn,
                "subscriptions",
                {
                    "id": event.subscription_id,
                    "customer_id": customer_id,
                    "plan": (plan or Plan.MONTHLY).value,
                    "created_at": to_iso(now),
                    **facts,
                },
            )
        else:
            await update(conn, "subscriptions", "id", event.subscription_id, facts)
        await record_event(
            conn,
            now,
            ACTOR_PADDLE,
            envelope.event_type,
            customer_id=customer_id,
            payload={
                "subscription_id": event.subscription_id,
                "status": status.value,
                "event_id": envelope.event_id,
            },
        )
        became_past_due = status is SubscriptionStatus.PAST_DUE and (
            existing is None or existing["status"] != SubscriptionStatus.PAST_DUE
        )
        await self._converge(
            conn,
            customer_id,
            "subscription_id",
            event.subscription_id,
            Plan.MONTHLY,
            paying=status
            in (
                SubscriptionStatus.ACTIVE,
                SubscriptionStatus.TRIALING,
                SubscriptionStatus.PAST_DUE,
            ),
        )
        if became_past_due:
            await self._warn_past_due(conn, customer_id, event.subscription_id)
        return "applied"

    async def _warn_past_due(
        self, conn: aiosqlite.Connection, customer_id: str, subscription_id: str
    ) -> None:
        now = self.clock.now()
        days = self.lifecycle.timings.past_due_suspend.days
        await notify_ops(
            conn,
            now,
            "past_due",
            f"subscription {subscription_id} is past due: suspends in {days} days unless paid",
            customer_id=customer_id,
        )
        await notify_customer(
            conn,
            now,
            customer_id,
            "past_due",
            ref={"subscription_id": subscription_id, "days": days},
        )

    async def _converge(
        self,
        conn: aiosqlite.Connection,
        customer_id: str,
        column: str,
        key: str,
        plan: Plan,
        *,
        paying: bool,
    ) -> None:
        """Re-derive the desired state of what this payment pays for; a payment with no
        live instance (new, or back after destruction) gets a new one."""
        instances = await live_instances(conn, column, key)
        for instance in instances:
            await self.lifecycle.reevaluate(conn, instance["id"], ACTOR_PADDLE)
        if not instances and paying:
            await self.lifecycle.create_instance(
                conn, customer_id, plan, ACTOR_PADDLE, **{column: key}
            )

    async def _customer_for(
        self,
        conn: aiosqlite.Connection,
        paddle_customer_id: str | None,
        existing: aiosqlite.Row | None,
        custom_data: dict[str, object],
    ) -> str:
        if existing is not None:
            customer_id = str(existing["customer_id"])
            if paddle_customer_id:  # a subscription first named by POST /api/provision
                await conn.execute(
                    "UPDATE customers SET paddle_customer_id = ?, contact_next_attempt_at = "
                    "COALESCE(contact_next_attempt_at, ?) WHERE id = ? AND paddle_customer_id "
                    "IS NULL AND NOT EXISTS (SELECT 1 FROM customers WHERE paddle_customer_id = ?)",
                    (paddle_customer_id, to_iso(self.clock.now()), customer_id, paddle_customer_id),
                )
        else:
            customer_id = await self.lifecycle.find_or_create_customer(
                conn, paddle_customer_id=paddle_customer_id
            )
        token = custom_data.get("onboarding_token")
        if isinstance(token, str) and 0 < len(token) <= 64:
            await conn.execute(
                "UPDATE customers SET onboarding_token_hash = ? WHERE id = ? AND "
                "onboarding_token_hash IS NULL AND NOT EXISTS (SELECT 1 FROM customers WHERE "
                "onboarding_token_hash = ?)",
                (token_hash(token), customer_id, token_hash(token)),
            )
        return customer_id

    # -- lifetime purchases, refunds, customers -------------------------------------------

    async def _transaction(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        event = transaction_event(envelope)
        if event.subscription_id is not None or self.prices.lifetime not in event.price_ids:
            return "stored"  # a renewal or another product: nothing to provision
        now = self.clock.now()
        if await fetch_one(conn, "SELECT 1 FROM purchases WHERE id = ?", (event.transaction_id,)):
            return "stale"
        customer_id = await self._customer_for(
            conn, event.paddle_customer_id, None, event.custom_data
        )
        await insert(
            conn,
            "purchases",
            {
                "id": event.transaction_id,
                "customer_id": customer_id,
                "price_id": self.prices.lifetime,
                "occurred_at": to_iso(envelope.occurred_at),
                "changed_at": to_iso(now),
                "created_at": to_iso(now),
            },
        )
        await record_event(
            conn,
            now,
            ACTOR_PADDLE,
            envelope.event_type,
            customer_id=customer_id,
            payload={
                "transaction_id": event.transaction_id,
                "plan": "lifetime",
                "event_id": envelope.event_id,
            },
        )
        await self._converge(
            conn, customer_id, "purchase_id", event.transaction_id, Plan.LIFETIME, paying=True
        )
        sold = await fetch_one(conn, "SELECT COUNT(*) AS n FROM purchases")
        if sold is not None and sold["n"] > self.lifetime_cap:
            await notify_ops(
                conn,
                now,
                "lifetime_cap",
                f"lifetime purchase {event.transaction_id} is number {sold['n']}, "
                f"over the cap of {self.lifetime_cap}: honoured",
                customer_id=customer_id,
            )
        return "applied"

    async def _adjustment(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        event = adjustment_event(envelope)
        now = self.clock.now()
        if event.status != "approved" or event.action not in ("refund", "chargeback"):
            return "stored"
        if event.action == "refund" and event.kind != "full":
            await notify_ops(
                conn,
                now,
                "partial_refund",
                f"partial refund {event.adjustment_id} on {event.transaction_id}: "
                f"service continues",
            )
            return "applied"
        target = await self._refund_target(conn, event.transaction_id, event.subscription_id)
        if target is None:
            await notify_ops(
                conn,
                now,
                "refund_unmatched",
                f"{event.action} {event.adjustment_id} matches no purchase or subscription we know",
            )
            return "ignored"
        table, column, key, customer_id = target
        await conn.execute(
            f"UPDATE {table} SET refunded_at = COALESCE(refunded_at, ?), "  # noqa: S608
            "changed_at = ? WHERE id = ?",
            (to_iso(now), to_iso(now), key),
        )
        await record_event(
            conn,
            now,
            ACTOR_PADDLE,
            envelope.event_type,
            customer_id=customer_id,
            payload={"action": event.action, "adjustment_id": event.adjustment_id, column: key},
        )
        for instance in await live_instances(conn, column, key):
            await self.lifecycle.reevaluate(conn, instance["id"], ACTOR_PADDLE)
        return "applied"

    async def _refund_target(
        self, conn: aiosqlite.Connection, transaction_id: str | None, subscription_id: str | None
    ) -> tuple[str, str, str, str] | None:
        if transaction_id:
            row = await fetch_one(
                conn, "SELECT id, customer_id FROM purchases WHERE id = ?", (transaction_id,)
            )
            if row is not None:
                return "purchases", "purchase_id", row["id"], row["customer_id"]
        if subscription_id:
            row = await fetch_one(
                conn, "SELECT id, customer_id FROM subscriptions WHERE id = ?", (subscription_id,)
            )
            if row is not None:
                return "subscriptions", "subscription_id", row["id"], row["customer_id"]
        return None

    async def _customer(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        event = customer_event(envelope)
        now = to_iso(self.clock.now())
        row = await fetch_one(
            conn,
            "SELECT * FROM customers WHERE paddle_customer_id = ?",
            (event.paddle_customer_id,),
        )
        occurred = to_iso(envelope.occurred_at)
        if row is None:
            await self.lifecycle.find_or_create_customer(
                conn,
                paddle_customer_id=event.paddle_customer_id,
                email=event.email,
                name=event.name,
            )
            await conn.execute(
                "UPDATE customers SET contact_occurred_at = ?, contact_synced_at = ?"
                " WHERE paddle_customer_id = ?",
                (occurred, now, event.paddle_customer_id),
            )
            return "applied"
        if row["contact_occurred_at"] and row["contact_occurred_at"] >= occurred:
            return "stale"
        await update(
            conn,
            "customers",
            "id",
            row["id"],
            {
                "email": event.email,
                "name": event.name or row["name"],
                "contact_occurred_at": occurred,
                "contact_synced_at": now,
                "contact_next_attempt_at": None,
                "updated_at": now,
            },
        )
        return "applied"


def _past_due_since(
    existing: aiosqlite.Row | None, status: SubscriptionStatus, now: datetime
) -> str | None:
    """Past due since we first learned it (and warned the customer); cleared once paid."""
    return _since(existing, "past_due_since", status is SubscriptionStatus.PAST_DUE, now)


def _since(existing: aiosqlite.Row | None, column: str, holds: bool, now: datetime) -> str | None:
    """When a billing state began, by our clock: grace periods run from when we learned
    of it and warned the customer, so a late or replayed delivery never skips one."""
    if not holds:
        return None
    if existing is not None and existing[column]:
        return str(existing[column])
    return to_iso(now)
