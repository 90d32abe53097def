"""The monitor's scheduler: runs recorded in the database, one run of a job at a time,
and a stuck job seen from outside through GET /healthz."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core.clock import FakeClock
from db.connection import Database
from monitor.scheduler import Job, MonitorScheduler
from tests.conftest import Backend


async def test_runs_are_recorded_and_a_failure_does_not_stop_the_next(
    db: Database, clock: FakeClock
) -> None:
    outcomes = [RuntimeError("hetzner down"), None]

    async def flaky() -> None:
        error = outcomes.pop(0)
        if error is not None:
            raise error

    scheduler = MonitorScheduler(db, clock, [Job("status", 300, flaky)])
    assert await scheduler.run_job("status") is False
    row = await db.fetch_one("SELECT * FROM job_runs WHERE job = 'status'")
    assert row is not None and row["runs"] == 1 and row["last_error"] == "RuntimeError"
    assert row["last_ok_at"] is None
    clock.advance(timedelta(seconds=300))
    assert await scheduler.run_job("status") is True
    row = await db.fetch_one("SELECT * FROM job_runs WHERE job = 'status'")
    assert row is not None and row["runs"] == 2 and row["last_error"] is None
    assert row["last_ok_at"] == row["last_finished_at"]


async def test_a_job_never_runs_twice_at_once(db: Database, clock: FakeClock) -> None:
    release = asyncio.Event()
    started = 0

    async def slow() -> None:
        nonlocal started
        started += 1
        await release.wait()

    scheduler = MonitorScheduler(db, clock, [Job("health", 0.02, slow, first_after_s=0)])
    scheduler.start()
    try:
        for _ in range(200):
            if started:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # ten intervals pass while the first run is stuck
        assert started == 1
        release.set()
        for _ in range(200):
            if started > 1:
                break
            await asyncio.sleep(0.01)
        assert started > 1  # it carries on once the stuck run ends
    finally:
        scheduler.shutdown()
        release.set()


async def test_a_stuck_job_makes_healthz_fail(backend: Backend, clock: FakeClock) -> None:
    stuck = asyncio.Event()
    scheduler = MonitorScheduler(
        backend.context.db, clock, [Job("health", 300, stuck.wait, first_after_s=3600)]
    )
    scheduler.start()
    backend.context.liveness.register("scheduler", scheduler.liveness)
    try:
        async with backend.client.get("/healthz") as response:
            assert response.status == 200
            body = await response.json()
        assert body["parts"]["scheduler"]["jobs"]["health"]["overdue"] is False
        clock.advance(timedelta(seconds=2 * 300 + 61))  # no run finished for too long
        async with backend.client.get("/healthz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["ok"] is False and body["parts"]["scheduler"]["ok"] is False
        assert body["parts"]["scheduler"]["jobs"]["health"]["overdue"] is True
        stuck.set()  # unstuck: the next run finishes
        await scheduler.run_job("health")
        async with backend.client.get("/healthz") as response:
            assert response.status == 200
    finally:
        scheduler.shutdown()
