"""Every rule of DESIGN.md's billing policy, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.models import AdminHold, DesiredState, Plan, SubscriptionStatus
from core.policy import AdminFacts, BillingFacts, PolicyTimings, decide, resume_hold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
TIMINGS = PolicyTimings()
ACTIVE, SUSPENDED, DESTROYED = DesiredState.ACTIVE, DesiredState.SUSPENDED, DesiredState.DESTROYED
S = SubscriptionStatus


def sub(status: SubscriptionStatus, **kw: datetime) -> BillingFacts:
    return BillingFacts(Plan.MONTHLY, changed_at=T0, subscription_status=status, **kw)


CASES = [
    # (name, billing facts, admin facts, days after T0, expected state, expected deadline)
    ("active", sub(S.ACTIVE), AdminFacts(), 400, ACTIVE, None),
    ("trialing", sub(S.TRIALING), AdminFacts(), 10, ACTIVE, None),
    ("past due, day 6", sub(S.PAST_DUE, past_due_since=T0), AdminFacts(), 6, ACTIVE, 7),
    ("past due, day 7", sub(S.PAST_DUE, past_due_since=T0), AdminFacts(), 7, SUSPENDED, 37),
    ("past due, day 37", sub(S.PAST_DUE, past_due_since=T0), AdminFacts(), 37, DESTROYED, None),
    ("paused", sub(S.PAUSED, paused_at=T0), AdminFacts(), 0, SUSPENDED, 30),
    ("paused, day 30", sub(S.PAUSED, paused_at=T0), AdminFacts(), 30, DESTROYED, None),
    ("canceled, grace", sub(S.CANCELED, canceled_at=T0), AdminFacts(), 2.9, ACTIVE, 3),
    ("canceled, day 3", sub(S.CANCELED, canceled_at=T0), AdminFacts(), 3, SUSPENDED, 33),
    ("canceled, day 33", sub(S.CANCELED, canceled_at=T0), AdminFacts(), 33, DESTROYED, None),
    ("lifetime", BillingFacts(Plan.LIFETIME, T0), AdminFacts(), 3650, ACTIVE, None),
    ("manual", BillingFacts(Plan.MANUAL, T0), AdminFacts(), 3650, ACTIVE, None),
    (
        "lifetime refunded",
        BillingFacts(Plan.LIFETIME, T0, refunded_at=T0),
        AdminFacts(),
        1,
        SUSPENDED,
        30,
    ),
    ("subscription charged back", sub(S.ACTIVE, refunded_at=T0), AdminFacts(), 0, SUSPENDED, 30),
    (
        "refund, day 30",
        BillingFacts(Plan.LIFETIME, T0, refunded_at=T0),
        AdminFacts(),
        30,
        DESTROYED,
        None,
    ),
    ("admin destroy beats paid", sub(S.ACTIVE), AdminFacts(destroyed_at=T0), 0, DESTROYED, None),
    (
        "admin hold beats paid",
        sub(S.ACTIVE),
        AdminFacts(AdminHold.SUSPENDED, T0, "abuse"),
        100,
        SUSPENDED,
        None,
    ),
    (
        "admin hold outlasts billing destruction",
        sub(S.CANCELED, canceled_at=T0),
        AdminFacts(AdminHold.SUSPENDED, T0, "legal"),
        100,
        SUSPENDED,
        None,
    ),
    (
        "admin hold on a comped instance",
        BillingFacts(Plan.MANUAL, T0),
        AdminFacts(AdminHold.SUSPENDED, T0, "abuse"),
        1,
        SUSPENDED,
        None,
    ),
    (
        "admin resume overrides past-due suspension",
        sub(S.PAST_DUE, past_due_since=T0),
        AdminFacts(AdminHold.RESUMED, T0 + 8 * DAY),
        9,
        ACTIVE,
        37,
    ),
    (
        "admin resume lapses at the next deadline",
        sub(S.PAST_DUE, past_due_since=T0),
        AdminFacts(AdminHold.RESUMED, T0 + 8 * DAY),
        37,
        DESTROYED,
        None,
    ),
]


@pytest.mark.parametrize(
    ("billing", "admin", "days", "expected", "deadline"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    billing: BillingFacts,
    admin: AdminFacts,
    days: float,
    expected: DesiredState,
    deadline: float | None,
) -> None:
    decision = decide(billing, admin, T0 + days * DAY, TIMINGS)
    assert decision.desired_state is expected
    assert decision.next_deadline == (T0 + deadline * DAY if deadline is not None else None)


def test_admin_resume_lapses_with_the_next_billing_event() -> None:
    resumed = AdminFacts(AdminHold.RESUMED, T0 + 8 * DAY)
    later_event = BillingFacts(
        Plan.MONTHLY, T0 + 10 * DAY, SubscriptionStatus.PAST_DUE, past_due_since=T0
    )
    assert decide(later_event, resumed, T0 + 10 * DAY, TIMINGS).desired_state is SUSPENDED


def test_resume_leaves_a_hold_only_when_billing_would_suspend() -> None:
    assert resume_hold(sub(S.ACTIVE), T0, TIMINGS) is None
    assert resume_hold(sub(S.PAUSED, paused_at=T0), T0, TIMINGS) is AdminHold.RESUMED


def test_every_number_is_a_setting() -> None:
    short = PolicyTimings.from_days(past_due=1, cancel_grace=0, destroy_after=2)
    facts = sub(S.PAST_DUE, past_due_since=T0)
    assert decide(facts, AdminFacts(), T0 + DAY, short).desired_state is SUSPENDED
    assert decide(facts, AdminFacts(), T0 + 3 * DAY, short).desired_state is DESTROYED


def test_an_admin_resume_after_billing_destruction_is_not_for_ever() -> None:
    canceled = sub(S.CANCELED, canceled_at=T0)
    resumed = AdminFacts(AdminHold.RESUMED, T0 + 100 * DAY)
    during = decide(canceled, resumed, T0 + 101 * DAY, TIMINGS)
    assert during.desired_state is ACTIVE and during.next_deadline == T0 + 130 * DAY
    assert decide(canceled, resumed, T0 + 130 * DAY, TIMINGS).desired_state is DESTROYED


def test_admin_decisions_are_marked() -> None:
    assert decide(sub(S.ACTIVE), AdminFacts(AdminHold.SUSPENDED, T0, "x"), T0, TIMINGS).by_admin
    assert not decide(sub(S.PAUSED, paused_at=T0), AdminFacts(), T0, TIMINGS).by_admin
