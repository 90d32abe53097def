"""The rollout rule (core.rollouts.next_move): canary, soak, batches, halts, quiet hours."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from core.rollouts import (
    Candidate,
    Complete,
    Halt,
    Member,
    MemberState,
    PassCanary,
    Phase,
    Rollout,
    RolloutPlan,
    RolloutState,
    Soak,
    Start,
    Wait,
    canary_size_for,
    next_move,
)

NIGHT = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)  # inside quiet hour 2
DAY = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def rollout(**overrides: object) -> Rollout:
    values: dict[str, object] = {
        "id": 1,
        "version": "2026.10.1",
        "previous_version": "2026.9.6",
        "state": RolloutState.RUNNING,
        "phase": Phase.CANARY,
        "canary_size": 1,
        "batch_size": 2,
        "max_failures": 2,
        "failures_forgiven": 0,
        "soak_s": 1800.0,
        "respect_quiet_window": True,
        "soak_until": None,
        "canary_passed_at": None,
        "halt_reason": None,
        "waiting_for": None,
        "requested_by": "api",
        "created_at": NIGHT,
        "started_at": NIGHT,
        "finished_at": None,
    }
    return Rollout(**(values | overrides))  # type: ignore[arg-type]


def member(instance_id: str, state: MemberState, batch: int = 0) -> Member:
    return Member(instance_id, batch, state, "2026.9.6", 1, "detail of " + instance_id)


def candidates(*hours: int) -> list[Candidate]:
    return [Candidate(f"inst_{n}", "2026.9.6", hour) for n, hour in enumerate(hours)]


def test_canary_of_one_or_five_percent() -> None:
    assert [canary_size_for(n) for n in (0, 1, 20, 21, 100, 1000)] == [1, 1, 1, 2, 5, 50]


def test_upgrades_start_only_in_the_instances_quiet_hour() -> None:
    fleet = candidates(1, 2, 3, 2)
    assert next_move(rollout(), [], fleet, NIGHT) == Start(("inst_1",), 0)
    waiting = next_move(rollout(), [], fleet, DAY)
    assert isinstance(waiting, Wait) and waiting.until == DAY.replace(hour=15, minute=0)
    batches = rollout(phase=Phase.BATCHES)
    assert next_move(batches, [], fleet, NIGHT) == Start(("inst_1", "inst_3"), 1)
    anytime = rollout(phase=Phase.BATCHES, respect_quiet_window=False, batch_size=3)
    assert next_move(anytime, [], fleet, DAY) == Start(("inst_0", "inst_1", "inst_2"), 1)


def test_canary_then_soak_then_pass() -> None:
    upgrading = [member("inst_a", MemberState.UPGRADING)]
    assert isinstance(next_move(rollout(), upgrading, candidates(2), NIGHT), Wait)
    upgraded = [member("inst_a", MemberState.UPGRADED)]
    assert next_move(rollout(), upgraded, candidates(2), NIGHT) == Soak(
        NIGHT + timedelta(minutes=30)
    )
    soaking = rollout(phase=Phase.SOAK, soak_until=NIGHT + timedelta(minutes=30))
    wait = next_move(soaking, upgraded, candidates(2), NIGHT)
    assert wait == Wait("the soak", NIGHT + timedelta(minutes=30))
    later = NIGHT + timedelta(minutes=31)
    assert next_move(soaking, upgraded, candidates(2), later) == PassCanary(("inst_a",))


def test_a_failed_or_ill_canary_halts() -> None:
    failed = [member("inst_a", MemberState.ROLLED_BACK)]
    halt = next_move(rollout(), failed, candidates(2), NIGHT)
    assert isinstance(halt, Halt) and "canary inst_a failed: detail of inst_a" in halt.reason
    assert halt.roll_back == ()  # the upgrade operation rolled it back already
    soaking = rollout(phase=Phase.SOAK, soak_until=NIGHT + timedelta(minutes=30))
    upgraded = [member("inst_a", MemberState.UPGRADED)]
    ill = next_move(soaking, upgraded, candidates(2), NIGHT, unhealthy={"inst_a"})
    assert ill == Halt("canary inst_a unhealthy during the soak", ("inst_a",))
    # Resumed after the halt: that failure is forgiven, another canary is tried.
    resumed = rollout(failures_forgiven=1)
    assert next_move(resumed, failed, candidates(2), NIGHT) == Start(("inst_0",), 0)


def test_batches_one_after_another_and_halt_at_the_limit() -> None:
    batches = rollout(phase=Phase.BATCHES, respect_quiet_window=False)
    done = [member("inst_a", MemberState.UPGRADED), member("inst_b", MemberState.UPGRADED, 1)]
    assert next_move(batches, done, candidates(1, 1, 1), DAY) == Start(("inst_0", "inst_1"), 2)
    in_flight = [*done, member("inst_c", MemberState.UPGRADING, 2)]
    assert next_move(batches, in_flight, candidates(1), DAY) == Wait(
        "batch 2: 1 instances upgrading"
    )
    one_failed = [*done, member("inst_c", MemberState.ROLLED_BACK, 2)]
    assert isinstance(next_move(batches, one_failed, candidates(1), DAY), Start)
    two_failed = [*one_failed, member("inst_d", MemberState.FAILED, 2)]
    halt = next_move(batches, two_failed, candidates(1), DAY)
    assert isinstance(halt, Halt) and "2 instances failed (the limit is 2)" in halt.reason
    assert isinstance(next_move(batches, done, [], DAY, provisioning_old=1), Wait)
    assert next_move(batches, done, [], DAY) == Complete()


def test_nothing_to_upgrade_completes_at_once() -> None:
    assert next_move(rollout(), [], [], NIGHT) == Complete()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"version": "latest"}, "not an OpenClaw version"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_failures": 0}, "max_failures"),
        ({"soak_s": -1}, "soak_s"),
        ({"canary_size": 0}, "canary"),
    ],
)
def test_plans_are_checked(change: dict[str, object], problem: str) -> None:
    plan = RolloutPlan("2026.10.1", batch_size=5, max_failures=2, soak_s=1800)
    assert plan.problem() is None
    found = dataclasses.replace(plan, **change).problem()  # type: ignore[arg-type]
    assert found is not None and problem in found


def test_resumed_in_the_soak_after_a_rollback_tries_a_new_canary() -> None:
    soaking = rollout(phase=Phase.SOAK, soak_until=NIGHT, failures_forgiven=1)
    rolled_back = [member("inst_a", MemberState.ROLLED_BACK)]
    assert next_move(soaking, rolled_back, candidates(2), NIGHT) == Start(("inst_0",), 0)
