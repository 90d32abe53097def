"""Billing facts from Paddle events: subscriptions, lifetime purchases, refunds, contacts.

Events older than the last applied one for their subscription change nothing. A
payment makes an instance when it starts paying (a new subscription or purchase, or
a subscription paying again after a billing destruction), never otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from core.clock import from_iso, to_iso
from core.customers import apply_customer_event, find_or_create_customer
from core.ids import token_hash
from core.journal import notify_customer, notify_ops, record_event
from core.lifecycle import Lifecycle, dumps, live_instances
from core.models import ACTOR_PADDLE, Plan, SubscriptionStatus
from core.paddle_events import (
    SUBSCRIPTION_EVENTS,
    Envelope,
    MalformedEvent,
    adjustment_event,
    subscription_event,
    transaction_event,
)
from db.records import fetch_one, insert, update

log = logging.getLogger(__name__)

DEFERRED = "deferred"  # cannot apply yet; tried again after the next event that applies
PAYING = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})


@dataclass(frozen=True)
class Prices:
    monthly: str
    lifetime: str


class Billing:
    """Applies one Paddle event's facts inside the inbox's transaction."""

    def __init__(self, lifecycle: Lifecycle, prices: Prices, lifetime_cap: int) -> None:
        self.lifecycle = lifecycle
        self.clock = lifecycle.clock
        self.prices = prices
        self.lifetime_cap = lifetime_cap

    async def apply(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        """The event's effect; returns its outcome (applied, stale, ignored, stored, deferred)."""
        return await self._dispatch(conn, envelope)

    async def _dispatch(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        kind = envelope.event_type
        if kind in SUBSCRIPTION_EVENTS:
            return await self._subscription(conn, envelope)
        if kind == "transaction.completed":
            return await self._transaction(conn, envelope)
        if kind in ("adjustment.created", "adjustment.updated"):
            return await self._adjustment(conn, envelope)
        if kind in ("customer.created", "customer.updated"):
            return await apply_customer_event(conn, self.clock.now(), envelope)
        return "stored"

    # -- subscriptions --------------------------------------------------------------------

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
        last = existing["occurred_at"] if existing else None
        if last and from_iso(last) > envelope.occurred_at:
            return "stale"
        if existing is None and self.prices.monthly not in event.price_ids:
            prices = ", ".join(event.price_ids) or "no items"
            await notify_ops(
                conn,
                now,
                "unknown_price",
                f"subscription {event.subscription_id} has no known price ({prices}): "
                "no instance made",
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
            "past_due_since": _since(existing, "past_due_since", status, now),
            "paused_at": _since(existing, "paused_at", status, now),
            "canceled_at": _since(existing, "canceled_at", status, now),
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
                    "plan": Plan.MONTHLY.value,
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
        # Only a subscription that starts paying makes an instance: a new one, or one
        # paying again after not paying (its instance may have been destroyed meanwhile).
        was_paying = existing is not None and existing["status"] in PAYING
        starts_paying = status in PAYING and not was_paying
        await self._converge(
            conn,
            customer_id,
            "subscription_id",
            event.subscription_id,
            Plan.MONTHLY,
            starts_paying=starts_paying,
        )
        if status is SubscriptionStatus.PAST_DUE and (
            existing is None or existing["status"] != SubscriptionStatus.PAST_DUE
        ):
            await self._warn_past_due(conn, customer_id, event.subscription_id)
        return "applied"

    async def _warn_past_due(
        self, conn: aiosqlite.Connection, customer_id: str, subscription_id: str
    ) -> None:
        now = self.clock.now()
        days = f"{self.lifecycle.timings.past_due_suspend.total_seconds() / 86400:g}"
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
        starts_paying: bool,
    ) -> None:
        """Re-derive the desired state of what this payment pays for, and give a payment
        that starts paying an instance if it has none. An admin's destroy is final."""
        instances = await live_instances(conn, column, key)
        for instance in instances:
            await self.lifecycle.reevaluate(conn, instance["id"], ACTOR_PADDLE)
        if instances or not starts_paying:
            return
        by_admin = await fetch_one(
            conn,
            f"SELECT id FROM instances WHERE {column} = ? "  # noqa: S608
            "AND admin_destroyed_at IS NOT NULL",
            (key,),
        )
        if by_admin is not None:
            await notify_ops(
                conn,
                self.clock.now(),
                "paid_after_admin_destroy",
                f"{column.removesuffix('_id')} {key} pays again, but an admin destroyed "
                f"{by_admin['id']}: no new instance; refund or provision by hand",
                customer_id=customer_id,
            )
            return
        await self.lifecycle.create_instance(conn, customer_id, plan, ACTOR_PADDLE, **{column: key})

    async def _customer_for(
        self,
        conn: aiosqlite.Connection,
        paddle_customer_id: str | None,
        existing: aiosqlite.Row | None,
        custom_data: dict[str, object],
    ) -> str:
        now = self.clock.now()
        if existing is not None:
            customer_id = str(existing["customer_id"])
            if paddle_customer_id:  # a subscription first named by POST /api/provision
                await conn.execute(
                    "UPDATE customers SET paddle_customer_id = ?, contact_next_attempt_at = "
                    "COALESCE(contact_next_attempt_at, ?) WHERE id = ? AND paddle_customer_id "
                    "IS NULL AND NOT EXISTS (SELECT 1 FROM customers WHERE paddle_customer_id = ?)",
                    (paddle_customer_id, to_iso(now), customer_id, paddle_customer_id),
                )
        else:
            customer_id = await find_or_create_customer(
                conn, now, paddle_customer_id=paddle_customer_id
            )
        token = custom_data.get("onboarding_token")
        if isinstance(token, str) and 0 < len(token) <= 64:
            hashed = token_hash(token)
            await conn.execute(
                "UPDATE customers SET onboarding_token_hash = ? WHERE id = ? AND "
                "onboarding_token_hash IS NULL AND NOT EXISTS (SELECT 1 FROM customers WHERE "
                "onboarding_token_hash = ?)",
                (hashed, customer_id, hashed),
            )
        return customer_id

    # -- lifetime purchases, renewals, refunds ---------------------------------------------

    async def _transaction(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        event = transaction_event(envelope)
        if event.subscription_id is not None:
            return await self._renewal(conn, event.subscription_id)
        if self.prices.lifetime not in event.price_ids:
            return "stored"  # another product: nothing to provision
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
            payload={"transaction_id": event.transaction_id, "event_id": envelope.event_id},
        )
        await self._converge(
            conn,
            customer_id,
            "purchase_id",
            event.transaction_id,
            Plan.LIFETIME,
            starts_paying=True,
        )
        sold = await fetch_one(
            conn, "SELECT COUNT(*) AS n FROM purchases WHERE refunded_at IS NULL"
        )
        if sold is not None and sold["n"] > self.lifetime_cap:
            await notify_ops(
                conn,
                now,
                "lifetime_cap",
                f"lifetime purchase {event.transaction_id} is number {sold['n']}, over the cap "
                f"of {self.lifetime_cap}: honoured",
                customer_id=customer_id,
            )
        return "applied"

    async def _renewal(self, conn: aiosqlite.Connection, subscription_id: str) -> str:
        """A subscription's new payment: it clears an earlier refund or chargeback."""
        row = await fetch_one(
            conn,
            "SELECT customer_id, refunded_at FROM subscriptions WHERE id = ?",
            (subscription_id,),
        )
        if row is None or row["refunded_at"] is None:
            return "stored"
        await self._set_refunded(conn, "subscriptions", "subscription_id", subscription_id, None)
        return "applied"

    async def _set_refunded(
        self, conn: aiosqlite.Connection, table: str, column: str, key: str, when: str | None
    ) -> None:
        now = to_iso(self.clock.now())
        await conn.execute(
            f"UPDATE {table} SET refunded_at = ?, changed_at = ? WHERE id = ?",  # noqa: S608
            (when, now, key),
        )
        for instance in await live_instances(conn, column, key):
            await self.lifecycle.reevaluate(conn, instance["id"], ACTOR_PADDLE)

    async def _adjustment(self, conn: aiosqlite.Connection, envelope: Envelope) -> str:
        event = adjustment_event(envelope)
        now = self.clock.now()
        if event.status != "approved":
            return "stored"
        if event.action not in ("refund", "chargeback", "chargeback_reverse"):
            return "stored"
        if event.action == "refund" and event.kind != "full":
            await notify_ops(
                conn,
                now,
                "partial_refund",
                f"partial refund {event.adjustment_id} on {event.transaction_id}: "
                "service continues",
            )
            return "applied"
        target = await self._refund_target(conn, event.transaction_id, event.subscription_id)
        if target is None:
            return DEFERRED  # the purchase's own event has not arrived yet
        table, column, key, customer_id = target
        reversed_ = event.action == "chargeback_reverse"
        await self._set_refunded(conn, table, column, key, None if reversed_ else to_iso(now))
        await record_event(
            conn,
            now,
            ACTOR_PADDLE,
            envelope.event_type,
            customer_id=customer_id,
            payload={"action": event.action, "adjustment_id": event.adjustment_id, column: key},
        )
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

    # -- customers --------------------------------------------------------------------------


_STATE_COLUMNS = {
    "past_due_since": SubscriptionStatus.PAST_DUE,
    "paused_at": SubscriptionStatus.PAUSED,
    "canceled_at": SubscriptionStatus.CANCELED,
}


def _since(
    existing: aiosqlite.Row | None, column: str, status: SubscriptionStatus, now: datetime
) -> str | None:
    """When a billing state began, by our clock: grace periods run from when we learned
    of it and warned the customer, so a late or replayed delivery never skips one.
    Cleared once the subscription leaves that state."""
    if status is not _STATE_COLUMNS[column]:
        return None
    if existing is not None and existing[column]:
        return str(existing[column])
    return to_iso(now)
