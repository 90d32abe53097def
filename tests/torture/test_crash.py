"""Crash torture: signups in flight while the service, a real process, is SIGKILLed at
random moments and restarted. Afterwards nothing is lost: every instance active and
verified, one server each, nothing orphaned at Hetzner, every acknowledged webhook
applied once, every operation done once, every alert and customer message delivered
(a resend after a crash is a duplicate: counted and printed; the target is none)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.simulators import Simulators
from sim.paddle import WebhookSender, envelope, paddle_id, subscription_data
from tests.app.test_demo import free_port
from tests.torture.harness import (
    Report,
    ServiceProcess,
    Signup,
    address_pool,
    bot_messages,
    duplicates,
    needs_root,
    query,
    scale,
    signup,
    until,
)

pytestmark = needs_root

SIGNUPS = scale(5, 30)
KILLS = scale(3, 10)


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    world = Simulators(
        tmp_path / "world", time_scale=0.02, http_port=free_port(), address_pool=address_pool()
    )
    await world.start()
    # A new Hetzner project may hold 25 servers; this one was granted more.
    world.hetzner.state.server_limit = SIGNUPS + 10
    yield world
    await world.stop()


HOSTILE_PRICE = "pri_<b>x</b> & '; DROP TABLE instances; -- <script>"


async def hostile_event_reaches_the_ops_group_escaped(
    sims: Simulators, url: str, report: Report
) -> None:
    """(Bad input, checked here where a real process talks to Telegram.) A validly
    signed event with HTML and SQL in it: stored, no instance, and the operators' alert
    shows the text literally (Telegram would refuse unescaped HTML)."""
    customer = sims.paddle.add_customer("hostile@example.com")
    data = subscription_data(paddle_id("sub"), customer.id, "active", HOSTILE_PRICE)
    status, _ = await WebhookSender(f"{url}/api/webhook/paddle", sims.webhook_secret).post(
        json.dumps(envelope("subscription.created", data)).encode()
    )
    report.tried.append(f"a signed event with price id {HOSTILE_PRICE!r}: HTTP {status}")

    def alerted() -> bool:
        return any(HOSTILE_PRICE in t for t in bot_messages(sims, sims.ops_chat_id))

    if status != 200 or not await until(alerted, 30):
        report.lost.append("the hostile event's alert did not reach the ops group verbatim")


async def test_crash_torture(sims: Simulators, tmp_path: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    report = Report("crash")
    report.tried.append(f"{SIGNUPS} signups in flight, {KILLS} SIGKILLs at random (seed {seed})")
    service = ServiceProcess(sims, tmp_path, START_GRACE_S="2")
    database = Path(sims.env()["DATABASE_PATH"])
    await service.start()
    signups = [Signup(i) for i in range(SIGNUPS)]

    async def customer(s: Signup) -> None:
        await asyncio.sleep(rng.uniform(0, 2.0 * KILLS))  # spread over the kills
        await signup(sims, service.url, s)

    async def killer() -> None:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            rows = query(database, "SELECT coalesce(step, status) FROM instances")
            steps = Counter(r[0] for r in rows)
            await service.kill()
            during = ", ".join(f"{step} x{n}" for step, n in sorted(steps.items()))
            report.tried.append(f"SIGKILL during: {during or 'start-up'}")
            await service.start()

    try:
        await asyncio.gather(killer(), *(customer(s) for s in signups))

        def converged() -> bool:
            rows = query(database, "SELECT status, verified_at, setup_sent_at FROM instances")
            pending = query(database, "SELECT count(*) FROM notifications WHERE status!='sent'")
            return (
                len(rows) == SIGNUPS
                and all(r[0] == "active" and r[1] and r[2] for r in rows)
                and pending[0][0] == 0
            )

        settled = await until(converged, scale(180, 600))
        report.notes.append(f"converged: {settled}; service started {service.starts} times")
        await hostile_event_reaches_the_ops_group_escaped(sims, service.url, report)
    finally:
        await service.stop()

    by_sub = {s.subscription_id: s for s in signups}
    instances = query(database, "SELECT * FROM instances")
    for s in signups:  # every acknowledged webhook applied exactly once
        mine = [i for i in instances if i["subscription_id"] == s.subscription_id]
        if len(mine) != 1:
            report.lost.append(f"subscription {s.subscription_id}: {len(mine)} instances")
        sql = "SELECT outcome FROM paddle_events WHERE event_id = ?"
        events = query(database, sql, (s.event_id,))
        if [e[0] for e in events] != ["applied"]:
            report.lost.append(f"event {s.event_id}: {[e[0] for e in events]}")
    for row in instances:
        if row["status"] != "active" or not row["verified_at"]:
            report.lost.append(f"{row['id']}: {row['status']} ({row['step']}, {row['last_error']})")
        if row["subscription_id"] not in by_sub:
            report.lost.append(f"{row['id']}: an instance nobody paid for")
    # Hetzner: exactly one server per instance, nothing orphaned.
    names = sorted(s.name for s in sims.hetzner.state.servers.values())
    expected = sorted(row["server_name"] for row in instances)
    if names != expected:
        report.lost.append(f"servers {names} != instances {expected}")
    if len(sims.hetzner.state.ssh_keys) != 1:
        report.lost.append(f"{len(sims.hetzner.state.ssh_keys)} SSH keys (one shared expected)")
    if len(sims.hetzner.state.firewalls) != 1:
        report.lost.append(f"{len(sims.hetzner.state.firewalls)} firewalls (one shared expected)")
    snapshots = [i for i in sims.hetzner.state.images.values() if i.type == "snapshot"]
    if snapshots:
        report.lost.append(f"{len(snapshots)} orphaned snapshots")
    for op in query(database, "SELECT id, kind, state FROM operations WHERE state != 'done'"):
        report.lost.append(f"operation {op['id']} {op['kind']}: {op['state']}")
    # The outbox: every alert and customer message sent; resends counted.
    for n in query(database, "SELECT id, kind, status FROM notifications WHERE status!='sent'"):
        report.lost.append(f"notification {n['id']} {n['kind']}: {n['status']}")
    said: list[tuple[int, str]] = []
    for s in signups:
        texts = bot_messages(sims, s.chat_id)
        said += [(s.chat_id, t) for t in texts]
        if not any("/login/" in t for t in texts):
            report.lost.append(f"customer {s.index}: no setup message in the chat")
    said += [(sims.ops_chat_id, t) for t in bot_messages(sims, sims.ops_chat_id)]
    dups = duplicates(said)
    webhook_retries = sum(s.attempts - 1 for s in signups)
    report.notes.append(f"webhook deliveries retried by 'Paddle': {webhook_retries}")
    report.notes.append(f"duplicate messages after crashes: {dups} (target: none)")
    report.print()
    assert not report.lost, report.line()
