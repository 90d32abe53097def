"""The billing policy: pure functions from facts and `now` to a desired state.

Nothing here reads the database or the clock; `core.lifecycle` gathers the facts,
calls `decide`, and persists what comes out. Every number is a setting
(`PolicyTimings`), and every rule of DESIGN.md "Billing policy" is one branch below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.models import AdminHold, DesiredState, Plan, SubscriptionStatus


@dataclass(frozen=True)
class PolicyTimings:
    past_due_suspend: timedelta = timedelta(days=7)
    cancel_grace: timedelta = timedelta(days=3)
    destroy_after: timedelta = timedelta(days=30)

    @classmethod
    def from_days(cls, past_due: float, cancel_grace: float, destroy_after: float) -> PolicyTimings:
        return cls(
            timedelta(days=past_due), timedelta(days=cancel_grace), timedelta(days=destroy_after)
        )


@dataclass(frozen=True)
class BillingFacts:
    """What pays for one instance, as the last applied Paddle events left it."""

    plan: Plan
    changed_at: datetime  # when these facts last changed (our clock)
    subscription_status: SubscriptionStatus | None = None  # None for lifetime and manual
    past_due_since: datetime | None = None
    paused_at: datetime | None = None
    canceled_at: datetime | None = None  # when the cancellation took effect
    refunded_at: datetime | None = None  # approved full refund or chargeback


@dataclass(frozen=True)
class AdminFacts:
    hold: AdminHold | None = None
    hold_at: datetime | None = None
    hold_reason: str | None = None
    destroyed_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    desired_state: DesiredState
    reason: str
    since: datetime | None  # when this state became due by rule
    next_deadline: datetime | None  # when the decision changes without a new fact
    by_admin: bool = False  # an admin's destroy, hold or resume decided it
    admin_override: bool = False  # an admin's resume is overriding billing right now


def billing_decision(facts: BillingFacts, now: datetime, timings: PolicyTimings) -> Decision:
    """Billing alone: when the instance is suspended, and when it is destroyed."""
    suspend_at, reason = _suspension(facts, timings)
    if suspend_at is None:
        return Decision(DesiredState.ACTIVE, reason, facts.changed_at, None)
    if now < suspend_at:
        return Decision(
            DesiredState.ACTIVE, f"{reason}; suspends at deadline", facts.changed_at, suspend_at
        )
    destroy_at = suspend_at + timings.destroy_after
    if now < destroy_at:
        return Decision(
            DesiredState.SUSPENDED, reason, max(suspend_at, facts.changed_at), destroy_at
        )
    return Decision(DesiredState.DESTROYED, f"{reason}; retention ended", destroy_at, None)


def _suspension(facts: BillingFacts, timings: PolicyTimings) -> tuple[datetime | None, str]:
    """When billing suspends the instance (None: never, as things stand) and why."""
    if facts.refunded_at is not None:
        return facts.refunded_at, "payment refunded or charged back"
    if facts.plan is Plan.MANUAL:
        return None, "comped by an admin"
    if facts.plan is Plan.LIFETIME:
        return None, "lifetime purchase"
    status = facts.subscription_status
    if status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, None):
        return None, f"subscription {status or 'active'}"
    if status is SubscriptionStatus.PAST_DUE:
        since = facts.past_due_since or facts.changed_at
        return since + timings.past_due_suspend, "subscription past due"
    if status is SubscriptionStatus.PAUSED:
        return facts.paused_at or facts.changed_at, "subscription paused"
    canceled = facts.canceled_at or facts.changed_at
    return canceled + timings.cancel_grace, "subscription canceled"


def decide(
    billing: BillingFacts, admin: AdminFacts, now: datetime, timings: PolicyTimings
) -> Decision:
    """The desired state: an admin's destroy or hold beats billing; billing decides the rest."""
    if admin.destroyed_at is not None:
        return Decision(
            DesiredState.DESTROYED, "destroyed by an admin", admin.destroyed_at, None, by_admin=True
        )
    by_billing = billing_decision(billing, now, timings)
    if admin.hold is AdminHold.SUSPENDED:
        reason = f"suspended by an admin: {admin.hold_reason or 'no reason given'}"
        return Decision(DesiredState.SUSPENDED, reason, admin.hold_at, None, by_admin=True)
    if admin.hold is AdminHold.RESUMED and admin.hold_at is not None:
        override = _resume_override(by_billing, admin.hold_at, now, timings)
        if override is not None:
            return override
    return by_billing


def _resume_override(
    by_billing: Decision, hold_at: datetime, now: datetime, timings: PolicyTimings
) -> Decision | None:
    """An admin resume outlasts the billing state it overrode, until billing says something
    new: a later event (`changed_at`) or the next deadline. When billing has no deadline
    left (it would destroy), the override lasts one retention period, never for ever."""
    if by_billing.desired_state is DesiredState.ACTIVE or by_billing.since is None:
        return None
    if by_billing.since > hold_at:
        return None
    deadline = by_billing.next_deadline or hold_at + timings.destroy_after
    if now >= deadline:
        return None
    return Decision(
        DesiredState.ACTIVE,
        "resumed by an admin",
        hold_at,
        deadline,
        by_admin=True,
        admin_override=True,
    )


def resume_hold(billing: BillingFacts, now: datetime, timings: PolicyTimings) -> AdminHold | None:
    """The hold an admin resume leaves: none when billing is content, `resumed` otherwise."""
    if billing_decision(billing, now, timings).desired_state is DesiredState.ACTIVE:
        return None
    return AdminHold.RESUMED
