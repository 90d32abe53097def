"""The core's services, built together once so that `app/` and the tests wire them alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.admin_actions import AdminActions
from core.billing import Billing, Prices
from core.clock import Clock
from core.customers import Customers
from core.lifecycle import Lifecycle
from core.paddle_inbox import PaddleInbox
from core.policy import PolicyTimings
from db.connection import Database


@dataclass(frozen=True)
class CoreServices:
    db: Database
    clock: Clock
    lifecycle: Lifecycle
    admin: AdminActions
    billing: Billing
    inbox: PaddleInbox
    customers: Customers


def build_core(
    db: Database,
    clock: Clock,
    *,
    timings: PolicyTimings,
    prices: Prices,
    lifetime_cap: int,
    wake: Callable[[], None] = lambda: None,
) -> CoreServices:
    lifecycle = Lifecycle(db, clock, timings, wake)
    billing = Billing(lifecycle, prices, lifetime_cap)
    return CoreServices(
        db=db,
        clock=clock,
        lifecycle=lifecycle,
        admin=AdminActions(lifecycle),
        billing=billing,
        inbox=PaddleInbox(db, clock, billing),
        customers=Customers(db, clock),
    )
