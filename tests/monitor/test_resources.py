"""The resource check: real asyncssh against simulated servers, a real SQLite file, the
real reconciler; the check's own clock is a FakeClock so quiet windows come on demand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.clock import FakeClock, from_iso, to_iso
from core.models import ACTOR_API
from core.mute import mute
from core.resources import ResourceFigures, quiet_window_start
from monitor.resources import ParseError, ResourceCheck, parse_figures
from provisioner.provisioning import reboot_hour
from tests.provisioner.conftest import World

DISK_PERCENT = 85
MEMORY_MB = 1536
MIB = 1024 * 1024

# What an Ubuntu 24.04 CAX11 prints for the script (procps 4, systemd 255).
UBUNTU = """@@ocm df
Filesystem     1024-blocks    Used Available Capacity Mounted on
/dev/sda1         39937312 2503272  35754356       7% /
@@ocm free
               total        used        free      shared  buff/cache   available
Mem:            3814         905        2144           4        1001        2909
Swap:              0           0           0
@@ocm gateway
ActiveState=active
MemoryCurrent=1181843456
@@ocm end
"""


def test_parses_what_ubuntu_prints() -> None:
    assert parse_figures(UBUNTU) == ResourceFigures(
        disk_used_pct=6.5,
        disk_used_gb=2.4,
        disk_total_gb=38.1,
        memory_used_mb=905,
        memory_total_mb=3814,
        gateway_state="active",
        gateway_memory_mb=1127,
    )
    stopped = UBUNTU.replace("=active", "=failed").replace("=1181843456", "=[not set]")
    figures = parse_figures(stopped)
    assert (figures.gateway_state, figures.gateway_memory_mb) == ("failed", None)
    assert parse_figures(stopped.replace("[not set]", str(2**64 - 1))).gateway_memory_mb is None
    assert ResourceFigures.from_json(figures.to_json()) == figures
    assert ResourceFigures.from_json("{not json") is None


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Connection to 10.0.0.1 closed.\n",
        UBUNTU.replace("@@ocm end\n", ""),  # cut short
        UBUNTU.replace(UBUNTU.splitlines()[2], "bash: line 3: df: command not found"),
        UBUNTU.replace("2503272", "lots"),
        UBUNTU.replace("Mem:", "Memory:"),
        UBUNTU.replace("ActiveState=active\n", ""),
    ],
)
def test_output_not_understood_is_a_parse_error(output: str) -> None:
    with pytest.raises(ParseError):
        parse_figures(output)


def test_quiet_window() -> None:
    at = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert quiet_window_start(at, 3) == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    early = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    assert quiet_window_start(early, 3) == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    inside = datetime(2026, 11, 24, 3, 20, tzinfo=UTC)
    assert quiet_window_start(inside, 3) == inside
    later = quiet_window_start(inside, 3, include_current=False)
    assert later == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


# -- against simulated servers ---------------------------------------------------


def afternoon() -> FakeClock:
    """Today 14:00 UTC: every instance's quiet hour (01:00–04:59) is tonight."""
    now = datetime.now(UTC).replace(hour=14, minute=0, second=0, microsecond=0)
    return FakeClock(start=now)


def resource_check(world: World, clock: FakeClock) -> ResourceCheck:
    return ResourceCheck(
        world.core.db,
        clock,
        world.infra.ssh,
        world.core.admin,
        disk_alert_percent=DISK_PERCENT,
        memory_alert_mb=MEMORY_MB,
        concurrency=4,
    )


async def active(world: World, *emails: str) -> list[tuple[str, int]]:
    """Provisioned and active: (instance id, Hetzner server id) each."""
    ids = [await world.provision(email) for email in emails]
    await world.reconciler.settle()
    rows = [await world.instance(i) for i in ids]
    assert [r["status"] for r in rows] == ["active"] * len(ids)
    return [(r["id"], r["hetzner_server_id"]) for r in rows]


async def figures(world: World, instance_id: str) -> ResourceFigures:
    stored = ResourceFigures.from_json((await world.instance(instance_id))["resources"])
    assert stored is not None
    return stored


async def count(world: World, kind: str) -> int:
    return len(await world.notifications(kind))


async def events(world: World, instance_id: str, event_type: str) -> int:
    row = await world.core.db.fetch_one(
        "SELECT COUNT(*) FROM events WHERE instance_id = ? AND event_type = ?",
        (instance_id, event_type),
    )
    assert row is not None
    return int(row[0])


async def test_disk_at_90_percent_alerts_once_and_clears(world: World) -> None:
    [(instance_id, server)] = await active(world, "ada@example.com")
    clock = afternoon()
    check = resource_check(world, clock)

    world.vps.set_usage(server, disk_used_gb=36, disk_total_gb=40)  # 90 %
    first = await check.check()
    clock.advance(timedelta(hours=1))
    second = await check.check()
    assert (first.checked, first.failed, second.checked) == (1, {}, 1)
    assert (first.disk_alerts, second.disk_alerts) == (1, 0)
    [alert] = await world.notifications("disk_high")
    assert alert["instance_id"] == instance_id and "disk 90 % full" in alert["body"]
    stored = await figures(world, instance_id)
    assert (stored.disk_used_pct, stored.disk_used_gb, stored.disk_total_gb) == (90, 36, 40)
    assert (stored.gateway_state, stored.memory_total_mb) == ("active", 3814)
    assert stored.gateway_memory_mb == 1050  # the simulated gateway at rest, no leak
    assert stored.memory_used_mb == 310 + 1050  # the OS and the gateway
    row = await world.instance(instance_id)
    assert row["resources_checked_at"] == to_iso(clock.now())
    assert row["resources_error"] is None and row["memory_restart_due_at"] is None

    # Back to normal: closed with one notice, and nothing more while it stays so.
    world.vps.set_usage(server, disk_used_gb=10)
    await check.check()
    await check.check()
    assert await count(world, "disk_ok") == 1
    assert (await world.instance(instance_id))["disk_alerted_at"] is None
    assert (await figures(world, instance_id)).disk_used_pct == 25

    # Crossing again alerts again; still full a day after that alert, one reminder.
    world.vps.set_usage(server, disk_used_gb=38)
    await check.check()
    assert await count(world, "disk_high") == 2
    clock.advance(timedelta(hours=23))
    await check.check()
    assert await count(world, "disk_high") == 2
    clock.advance(timedelta(hours=1))
    await check.check()
    assert await count(world, "disk_high") == 3
    assert "still since the alert of" in (await world.notifications("disk_high"))[-1]["body"]
    assert await world.operations(instance_id) == []  # disk is for people to sort out


async def leaked_past(world: World, server: int, mb: int) -> None:
    """Wait (real time: the simulated leak grows with it) until the gateway uses `mb`."""
    gateway = world.vps.vps(server).gateway
    for _ in range(200):
        if gateway.memory_bytes() > mb * MIB:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the simulated gateway never leaked that far")


async def test_a_leaking_gateway_is_restarted_in_its_quiet_window(world: World) -> None:
    [(instance_id, server)] = await active(world, "ada@example.com")
    clock = afternoon()
    check = resource_check(world, clock)
    # About 250 MB per second of real time: past the threshold within about two seconds
    # of the gateway's start, so a fresh start reads well under it.
    world.vps.leak_memory(server, 250 * 3600 * world.vps.time_scale)
    await leaked_past(world, server, MEMORY_MB)

    first = await check.check()
    assert (first.memory_alerts, first.restarts_queued) == (1, [])
    due = from_iso((await world.instance(instance_id))["memory_restart_due_at"])
    tonight = clock.now() + timedelta(days=1)
    assert due == tonight.replace(hour=reboot_hour(instance_id))
    [alert] = await world.notifications("gateway_memory_high")
    assert f"restarting it at {due:%Y-%m-%d %H:%M} UTC" in alert["body"]
    leaked = (await figures(world, instance_id)).gateway_memory_mb
    assert leaked is not None and leaked > MEMORY_MB

    # Up to the window: checked, still leaking, neither told again nor restarted.
    clock.advance(due - clock.now() - timedelta(minutes=1))
    second = await check.check()
    assert (second.memory_alerts, second.restarts_queued) == (0, [])
    assert await world.operations(instance_id) == []

    # The window opens: the restart is queued once and the deadline is gone.
    clock.advance(timedelta(minutes=1))
    third = await check.check()
    assert third.restarts_queued == [instance_id]
    assert await check.queue_due_restarts() == []
    assert await world.operations(instance_id) == [("restart_gateway", "pending")]
    assert (await world.instance(instance_id))["memory_restart_due_at"] is None
    assert await events(world, instance_id, "operation_queued") == 1

    await world.reconciler.settle()
    assert await world.operations(instance_id) == [("restart_gateway", "done")]
    fourth = await check.check()
    assert fourth.checked == 1
    restarted = (await figures(world, instance_id)).gateway_memory_mb
    assert restarted is not None and restarted < MEMORY_MB
    [ok] = await world.notifications("gateway_memory_ok")
    assert f"back to {restarted} MB" in ok["body"]
    assert await count(world, "gateway_memory_high") == 1
    row = await world.instance(instance_id)
    assert row["memory_alerted_at"] is None and row["memory_restart_due_at"] is None


async def test_muted_is_recorded_not_alerted_and_one_unreachable_spares_the_rest(
    world: World,
) -> None:
    [(quiet, quiet_server), (gone, gone_server)] = await active(
        world, "ada@example.com", "bo@example.com"
    )
    clock = afternoon()
    check = resource_check(world, clock)
    await mute(world.core.lifecycle, quiet, clock.now() + timedelta(hours=6), ACTOR_API)
    world.vps.set_usage(quiet_server, disk_used_gb=36, disk_total_gb=40)
    world.vps.leak_memory(quiet_server, 10_000_000)  # far past the threshold at once
    await world.hetzner_sim.faults.kill_server(gone_server)

    for _ in range(2):
        summary = await check.check()
        assert summary.checked == 1 and list(summary.failed) == [gone]
        assert summary.failed[gone].startswith("ssh_unavailable")
        assert summary.alerts == {} and summary.restarts_queued == []
        clock.advance(timedelta(hours=1))
    stored = await figures(world, quiet)
    assert stored.disk_used_pct == 90
    assert stored.gateway_memory_mb is not None and stored.gateway_memory_mb > MEMORY_MB
    row = await world.instance(quiet)
    assert row["disk_alerted_at"] is None and row["memory_restart_due_at"] is None
    lost = await world.instance(gone)
    assert lost["resources"] is None and lost["resources_error"].startswith("ssh_unavailable")
    assert lost["resources_error_at"] == to_iso(clock.now() - timedelta(hours=2))  # since
    assert await events(world, gone, "resources_unreadable") == 1
    for kind in ("disk_high", "gateway_memory_high", "instance_unhealthy"):
        assert await count(world, kind) == 0

    # The mute ends: the next check tells both, and plans tonight's restart.
    clock.advance(timedelta(hours=4))
    summary = await check.check()
    assert (summary.disk_alerts, summary.memory_alerts) == (1, 1)
    due = from_iso((await world.instance(quiet))["memory_restart_due_at"])
    assert due == quiet_window_start(clock.now(), reboot_hour(quiet))

    # Muted again when it falls due: no restart; it moves to the next night's window.
    await mute(world.core.lifecycle, quiet, due + timedelta(hours=2), ACTOR_API)
    clock.advance(due - clock.now())
    assert await check.queue_due_restarts() == []
    assert from_iso((await world.instance(quiet))["memory_restart_due_at"]) == due + timedelta(
        days=1
    )
    assert await world.operations(quiet) == []

    # Unmuted, and the memory is back down before that window (someone restarted it):
    # the restart is dropped and the operators hear it is over.
    await mute(world.core.lifecycle, quiet, None, ACTOR_API)
    world.vps.leak_memory(quiet_server, 0)
    summary = await check.check()
    assert summary.alerts == {"gateway_memory_ok": 1}
    assert (await world.instance(quiet))["memory_restart_due_at"] is None
    assert await events(world, quiet, "gateway_restart_canceled") == 1
    clock.advance(timedelta(days=2))
    summary = await check.check()
    assert summary.restarts_queued == [] and await world.operations(quiet) == []
