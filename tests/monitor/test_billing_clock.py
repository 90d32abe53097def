"""The billing clock: deadlines pass without any new event, across a restart, and the
customer is warned before a suspension and told after it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core.billing import Prices
from core.clock import FakeClock
from core.policy import PolicyTimings
from core.services import CoreServices, build_core
from db.connection import Database
from monitor.billing_clock import billing_tick
from sim.paddle import paddle_time
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE, Backend
from tests.webhooks.test_billing_journeys import Subscription

WARN = timedelta(hours=24)
HOUR = timedelta(hours=1)


async def tick_until(core: CoreServices, clock: FakeClock, until: timedelta) -> None:
    """The scheduler's ticks, an hour apart, for `until`."""
    end = clock.now() + until
    while clock.now() < end:
        clock.advance(HOUR)
        await billing_tick(core.lifecycle, WARN)


async def customer_messages(core: CoreServices) -> list[str]:
    rows = await core.db.fetch_all(
        "SELECT kind FROM notifications WHERE recipient = 'customer' ORDER BY id"
    )
    return [r["kind"] for r in rows]


async def desired(core: CoreServices) -> str:
    row = await core.db.fetch_one("SELECT desired_state FROM instances")
    assert row is not None
    return str(row["desired_state"])


async def test_past_due_is_suspended_after_7_days_and_destroyed_30_days_later_across_a_restart(
    backend: Backend, clock: FakeClock, tmp_path: Path
) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    await sub.send("subscription.past_due", "past_due")
    core = backend.context.core
    await tick_until(core, clock, timedelta(days=5, hours=22))
    assert await desired(core) == "active"
    assert await customer_messages(core) == ["past_due"]
    await tick_until(core, clock, timedelta(hours=2))  # a day before the suspension
    assert await customer_messages(core) == ["past_due", "suspension_warning"]
    await tick_until(core, clock, timedelta(hours=23))
    assert await desired(core) == "active"  # warned once, not every tick

    # The service restarts: a new process, the same database file, time going on.
    restarted_db = await Database.open(tmp_path / "db" / "test.db")
    try:
        core = build_core(
            restarted_db, clock, timings=PolicyTimings(),
            prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE), lifetime_cap=100,
        )  # fmt: skip
        await tick_until(core, clock, 2 * HOUR)
        assert await desired(core) == "suspended"
        messages = await customer_messages(core)
        assert messages == ["past_due", "suspension_warning", "instance_suspended"]
        await tick_until(core, clock, timedelta(days=29, hours=22))
        assert await desired(core) == "suspended"
        await tick_until(core, clock, 2 * HOUR)
        assert await desired(core) == "destroyed"
        ops = await restarted_db.fetch_all(
            "SELECT kind FROM notifications WHERE recipient = 'ops' ORDER BY id"
        )
        kinds = [r["kind"] for r in ops]
        assert kinds.count("instance_suspended") == 1 and kinds.count("instance_destroyed") == 1
    finally:
        await restarted_db.close()


async def test_a_canceled_subscription_is_suspended_after_its_grace(
    backend: Backend, clock: FakeClock
) -> None:
    sub = Subscription(backend, clock)
    await sub.send("subscription.created", "active")
    await sub.send("subscription.canceled", "canceled", canceled_at=paddle_time(clock.now()))
    core = backend.context.core
    await tick_until(core, clock, timedelta(days=2))
    assert await desired(core) == "active"
    assert "suspension_warning" in await customer_messages(core)
    await tick_until(core, clock, timedelta(days=1, hours=1))
    assert await desired(core) == "suspended"
