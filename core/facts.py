"""Reading an instance's facts, as the policy wants them, from the database."""

from __future__ import annotations

from datetime import datetime

import aiosqlite

from core.clock import from_iso
from core.models import AdminHold, Plan, SubscriptionStatus
from core.policy import AdminFacts, BillingFacts
from db.records import fetch_one


def _time(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


def admin_facts(instance: aiosqlite.Row) -> AdminFacts:
    return AdminFacts(
        hold=AdminHold(instance["admin_hold"]) if instance["admin_hold"] else None,
        hold_at=_time(instance["hold_at"]),
        hold_reason=instance["hold_reason"],
        destroyed_at=_time(instance["admin_destroyed_at"]),
    )


async def billing_facts(conn: aiosqlite.Connection, instance: aiosqlite.Row) -> BillingFacts:
    """What pays for the instance: its subscription, its lifetime purchase, or an admin."""
    if instance["subscription_id"]:
        sub = await fetch_one(
            conn, "SELECT * FROM subscriptions WHERE id = ?", (instance["subscription_id"],)
        )
        assert sub is not None  # a foreign key
        return BillingFacts(
            plan=Plan(instance["plan"]),
            changed_at=from_iso(sub["changed_at"]),
            subscription_status=SubscriptionStatus(sub["status"]),
            past_due_since=_time(sub["past_due_since"]),
            paused_at=_time(sub["paused_at"]),
            canceled_at=_time(sub["canceled_at"]),
            refunded_at=_time(sub["refunded_at"]),
        )
    if instance["purchase_id"]:
        purchase = await fetch_one(
            conn, "SELECT * FROM purchases WHERE id = ?", (instance["purchase_id"],)
        )
        assert purchase is not None
        return BillingFacts(
            Plan.LIFETIME,
            from_iso(purchase["changed_at"]),
            refunded_at=_time(purchase["refunded_at"]),
        )
    return BillingFacts(Plan.MANUAL, from_iso(instance["created_at"]))
