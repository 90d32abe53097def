"""The health sweep: `GET http://IP:GATEWAY_PORT/healthz` of every active instance past
its start grace, with a per-check timeout and a bound on checks in flight, so that
10,000 instances finish well inside the interval (at worst ceil(N / concurrency)
timeouts). The timeout runs on the injected clock, so tests decide when it fires.

It only observes: the results go to `core.health`, which decides incidents, alerts
and repairs; the reconciler carries the repairs out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

import aiohttp

from core.clock import Clock, to_iso
from core.health import CheckResult, HealthRecorder
from db.connection import Database

log = logging.getLogger(__name__)

RECORD_BATCH = 500  # results recorded per transaction

# Active instances whose gateway should answer: past the start grace, and with no
# operation in flight (a restart or reboot takes the gateway down on purpose).
_DUE = """
SELECT id, server_ip FROM instances i
WHERE status = 'active' AND desired_state = 'active' AND server_ip IS NOT NULL
  AND (gateway_started_at IS NULL OR gateway_started_at <= ?)
  AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.instance_id = i.id AND o.state = 'running')
ORDER BY id
"""


@dataclass(frozen=True)
class SweepSummary:
    checked: int
    failed: int
    repairs: int
    max_in_flight: int
    longest_check_s: float  # on the injected clock: never more than the timeout
    seconds: float  # the whole sweep, on the injected clock


class HealthSweep:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        recorder: HealthRecorder,
        *,
        gateway_port: int,
        timeout_s: float,
        concurrency: int,
        start_grace_s: float,
    ) -> None:
        self.db = db
        self.clock = clock
        self.recorder = recorder
        self.gateway_port = gateway_port
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.start_grace = timedelta(seconds=start_grace_s)
        self._in_flight = 0
        self._max_in_flight = 0

    async def sweep(self) -> SweepSummary:
        started = self.clock.now()
        rows = await self.db.fetch_all(_DUE, (to_iso(started - self.start_grace),))
        due = iter(rows)  # shared by the workers: each instance is taken once
        self._max_in_flight = 0
        pending: list[CheckResult] = []
        failed = repairs = 0
        longest = 0.0
        # Keep-alive is useless across thousands of hosts; closing each connection keeps
        # the open sockets to the checks in flight.
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                # A fixed set of workers, not a task per instance: 10,000 tasks waiting
                # on a semaphore cost memory for nothing.
                nonlocal failed, repairs, longest
                for row in due:
                    began = self.clock.now()
                    result = await self._check(session, row["id"], row["server_ip"])
                    longest = max(longest, (result.checked_at - began).total_seconds())
                    failed += not result.ok
                    pending.append(result)
                    if len(pending) >= RECORD_BATCH:
                        batch = pending[:]
                        pending.clear()
                        repairs += await self.recorder.record(batch)

            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(rows)))))
        repairs += await self.recorder.record(pending)
        seconds = (self.clock.now() - started).total_seconds()
        if rows:
            log.info("health sweep: %d checked, %d failed in %.1f s", len(rows), failed, seconds)
        return SweepSummary(len(rows), failed, repairs, self._max_in_flight, longest, seconds)

    async def _check(
        self, session: aiohttp.ClientSession, instance_id: str, ip: str
    ) -> CheckResult:
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            probe = asyncio.ensure_future(self._probe(session, ip))
            timer = asyncio.ensure_future(self.clock.sleep(self.timeout_s))
            try:
                await asyncio.wait({probe, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (probe, timer):
                    task.cancel()
                await asyncio.gather(probe, timer, return_exceptions=True)
            error = probe.result() if probe.done() and not probe.cancelled() else "timeout"
        finally:
            self._in_flight -= 1
        return CheckResult(instance_id, error == "", self.clock.now(), error)

    async def _probe(self, session: aiohttp.ClientSession, ip: str) -> str:
        """'' when the gateway answered 200, else what went wrong, in a few words."""
        try:
            async with session.get(
                f"http://{ip}:{self.gateway_port}/healthz", allow_redirects=False
            ) as response:
                await response.read()
                return "" if response.status == 200 else f"HTTP {response.status}"
        except aiohttp.ClientConnectorError:
            return "connection refused"
        except (aiohttp.ClientError, OSError) as exc:
            return type(exc).__name__
