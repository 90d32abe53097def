"""Chaos: the simulators fail 10 % of everything at random (Hetzner 5xx, 429, 504,
`resource_unavailable`, `locked`; Telegram 429 and 5xx; SSH connections dropped
mid-command; gateways that hang for a while) while instances are bought. Every
instance ends `active`, or `failed` with an alert; none is stuck without one; no
duplicate servers; every message delivered.

The service runs in this process on the real clock, moved forward (as the demo's time
travel does) only when every unfinished instance is waiting out a step backoff of
minutes; nothing else is faked.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.demo import DEMO_SETTINGS
from app.service import Service
from app.simulators import Simulators
from core.clock import SystemClock, from_iso
from core.settings import Settings
from tests.app.test_demo import free_port
from tests.torture.harness import Report, Signup, address_pool, needs_root, query, scale, signup

pytestmark = needs_root

INSTANCES = scale(10, 50)
RATE = 0.10


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    world = Simulators(
        tmp_path / "world", time_scale=0.02, http_port=free_port(), address_pool=address_pool()
    )
    await world.start()
    # A new Hetzner project may hold 25 servers; this one was granted more.
    world.hetzner.state.server_limit = INSTANCES + 10
    yield world
    await world.stop()


async def test_chaos(sims: Simulators) -> None:
    assert sims.vps is not None
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    report = Report("chaos")
    report.tried.append(f"{INSTANCES} signups with {RATE:.0%} of calls failing (seed {seed})")
    values = {k.lower(): v for k, v in sims.env().items()} | DEMO_SETTINGS
    values |= {"admin_rate_limit_per_s": "100000", "health_check_interval_s": "5"}
    clock = SystemClock()
    service = Service(Settings(_env_file=None, **values), clock=clock)  # type: ignore[arg-type]
    database = Path(values["database_path"])
    await service.start()
    sims.hetzner.faults.chaos(RATE, seed=seed)
    sims.telegram.set_chaos(RATE, seed=seed)
    sims.vps.drop_ssh(RATE)
    hangs = 0
    travelled = timedelta(0)

    async def hang_gateways() -> None:
        nonlocal hangs
        assert sims.vps is not None
        while True:
            await asyncio.sleep(0.5)
            machines = list(sims.vps.machines)
            if machines and rng.random() < RATE * 5:
                server_id = rng.choice(machines)
                sims.vps.hang_gateway(server_id)
                hangs += 1
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                if server_id in sims.vps.machines:
                    sims.vps.hang_gateway(server_id, hang=False)

    def settled() -> bool:
        rows = query(database, "SELECT status FROM instances")
        pending = query(database, "SELECT count(*) FROM notifications WHERE status != 'sent'")
        done = all(r[0] in ("active", "failed") for r in rows)
        return len(rows) == INSTANCES and done and pending[0][0] == 0

    def waiting_for() -> float | None:
        """Seconds until the earliest backoff ends, when every unfinished instance and
        message is waiting one out (nothing in flight); else None."""
        now = clock.now()
        due = [
            r[0]
            for r in query(database, "SELECT next_attempt_at FROM instances WHERE status NOT IN "
                           "('active', 'failed', 'destroyed')")
        ] + [r[0] for r in query(database, "SELECT next_attempt_at FROM notifications "
                                           "WHERE status = 'pending'")]  # fmt: skip
        if not due or any(d is None or from_iso(d) <= now for d in due):
            return None
        return min((from_iso(d) - now).total_seconds() for d in due)

    signups = [Signup(i) for i in range(INSTANCES)]
    chaos = asyncio.create_task(hang_gateways())
    try:
        await asyncio.gather(*(signup(sims, service.url, s) for s in signups))
        for _ in range(scale(1500, 6000)):  # 0.2 s each
            if settled():
                break
            if (wait := waiting_for()) is not None and wait > 1:
                clock.travel(timedelta(seconds=wait + 1))
                travelled += timedelta(seconds=wait + 1)
                assert service.reconciler is not None
                service.reconciler.wake()
                if service.messaging is not None:
                    service.messaging.outbox.wake()
            await asyncio.sleep(0.2)
        report.notes.append(f"settled: {settled()}; the clock moved {travelled} ahead")
    finally:
        chaos.cancel()
        await asyncio.gather(chaos, return_exceptions=True)
        await service.stop()

    report.tried.append(
        f"injected: {sims.hetzner.faults.chaos_injected} Hetzner errors, "
        f"{sims.telegram.chaos_injected} Telegram errors, {hangs} gateway hangs, "
        f"SSH drops at {RATE:.0%} of commands"
    )
    instances = query(database, "SELECT * FROM instances")
    statuses = Counter(r["status"] for r in instances)
    report.notes.append(f"instances: {dict(statuses)}")
    if len(instances) != INSTANCES:
        report.lost.append(f"{len(instances)} instances for {INSTANCES} acknowledged signups")
    for row in instances:
        if row["status"] == "failed":
            alert = query(
                database,
                "SELECT status FROM notifications WHERE instance_id = ? AND kind = "
                "'instance_failed'",
                (row["id"],),
            )
            if [a[0] for a in alert] != ["sent"]:
                report.lost.append(f"{row['id']} failed without an alert ({alert})")
        elif row["status"] != "active":
            report.lost.append(f"{row['id']} stuck: {row['status']} at {row['step']}")
    names = Counter(s.name for s in sims.hetzner.state.servers.values())
    for name, n in names.items():
        if n > 1:
            report.lost.append(f"{n} servers named {name}")
    for row in instances:
        if row["status"] == "active" and names[row["server_name"]] != 1:
            report.lost.append(f"{row['id']} active with {names[row['server_name']]} servers")
    for note in query(database, "SELECT id, kind, status FROM notifications WHERE status!='sent'"):
        report.lost.append(f"notification {note[0]} {note[1]}: {note[2]}")
    report.print()
    assert not report.lost, report.line()
