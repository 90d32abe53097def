"""The monitor's schedule: APScheduler on the service's loop, every job coalesced, one
run at a time, with a misfire grace; each run recorded in `job_runs`.

The scheduler holds no deadline of its own. Jobs that are due by the day or the week
(backups, prices, snapshots) run often and ask the database whether anything is due,
so a restart neither loses nor repeats one. `liveness()` tells `GET /healthz` which
job has not finished a run for too long: a stuck scheduler, not only an open port.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.clock import Clock, from_iso, to_iso
from db.connection import Database

log = logging.getLogger(__name__)

_STARTED = "UPDATE job_runs SET last_started_at = :now, runs = runs + 1 WHERE job = :job"
_SUCCEEDED = (
    "UPDATE job_runs SET last_finished_at = :now, last_ok_at = :now, last_error = NULL "
    "WHERE job = :job"
)
_FAILED = "UPDATE job_runs SET last_finished_at = :now, last_error = :error WHERE job = :job"


@dataclass(frozen=True)
class Job:
    name: str
    every_s: float
    run: Callable[[], Awaitable[object]]
    first_after_s: float = 5.0  # after start-up, so the service is up before the first run

    @property
    def misfire_grace_s(self) -> int:
        """A run delayed by a busy loop still happens if it is late by less than half an
        interval; later than that, the next one is as good (coalesced)."""
        return max(1, int(self.every_s / 2))

    @property
    def overdue_after(self) -> timedelta:
        return timedelta(seconds=2 * self.every_s + 60)


class MonitorScheduler:
    def __init__(self, db: Database, clock: Clock, jobs: Sequence[Job]) -> None:
        self.db = db
        self.clock = clock
        self.jobs = {job.name: job for job in jobs}
        self.started_at: datetime | None = None
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        self.started_at = self.clock.now()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        for job in self.jobs.values():
            self._scheduler.add_job(
                self.run_job,
                "interval",
                seconds=job.every_s,
                args=[job.name],
                id=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=job.misfire_grace_s,
                next_run_time=datetime.now(UTC) + timedelta(seconds=job.first_after_s),
            )
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    async def run_job(self, name: str) -> bool:
        """Run one job now, recorded; True when it succeeded. A failure is logged and
        recorded, never raised: the next run tries again."""
        job = self.jobs[name]
        await self._record(name, _STARTED)
        try:
            await job.run()
        except Exception as exc:
            log.exception("job %s failed", name)
            await self._record(name, _FAILED, error=type(exc).__name__)
            return False
        await self._record(name, _SUCCEEDED)
        return True

    async def _record(self, name: str, statement: str, error: str | None = None) -> None:
        params = {"job": name, "now": to_iso(self.clock.now()), "error": error}
        async with self.db.transaction() as conn:
            await conn.execute("INSERT OR IGNORE INTO job_runs (job) VALUES (:job)", params)
            await conn.execute(statement, params)

    async def liveness(self) -> dict[str, Any]:
        """Each job's last run, and whether any is overdue (no run finished in twice its
        interval, counted from its last finish or from start-up)."""
        now = self.clock.now()
        rows = {r["job"]: r for r in await self.db.fetch_all("SELECT * FROM job_runs")}
        jobs: dict[str, Any] = {}
        for name, job in self.jobs.items():
            row = rows.get(name)
            finished = row["last_finished_at"] if row else None
            since = max(
                from_iso(finished) if finished else self.started_at or now,
                self.started_at or now,
            )
            jobs[name] = {
                "every_s": job.every_s,
                "last_started_at": row["last_started_at"] if row else None,
                "last_ok_at": row["last_ok_at"] if row else None,
                "last_error": row["last_error"] if row else None,
                "overdue": now - since > job.overdue_after,
            }
        overdue = any(j["overdue"] for j in jobs.values())
        return {"ok": self.running and not overdue, "running": self.running, "jobs": jobs}
