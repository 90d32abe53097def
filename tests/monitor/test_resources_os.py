"""The resource check also reads, for /fleet, the OS updates apt would install, whether a
reboot is required, and the OpenClaw version: parsed from what Ubuntu prints, and read
over real SSH from simulated servers."""

from __future__ import annotations

from core.fleet import fleet_view
from core.resources import ResourceFigures
from core.rollout_store import RolloutStore
from monitor.resources import parse_figures
from tests.monitor.test_resources import UBUNTU, active, afternoon, figures, resource_check
from tests.provisioner.conftest import World, needs_root

# `apt-get -s dist-upgrade | grep '^Inst '` on Ubuntu 24.04, one security fix among them.
UPDATES = """@@ocm updates
Inst libssl3t64 [3.0.13-0ubuntu3.4] (3.0.13-0ubuntu3.5 Ubuntu:24.04/noble-updates, Ubuntu:24.04/noble-security [arm64])
Inst tzdata [2024a-3ubuntu1.1] (2025b-0ubuntu0.24.04 Ubuntu:24.04/noble-updates [all])
@@ocm reboot
required
@@ocm openclaw
OpenClaw 2026.9.6
"""  # noqa: E501


def test_parses_updates_reboot_and_version() -> None:
    read = parse_figures(UBUNTU.replace("@@ocm end", UPDATES + "@@ocm end"))
    assert (read.updates_pending, read.security_updates) == (2, 1)
    assert read.reboot_required is True and read.openclaw_version == "2026.9.6"
    # The older script's output (and figures stored before) have none of it: not an error.
    assert parse_figures(UBUNTU).updates_pending is None
    old = '{"disk_used_pct": 1, "disk_used_gb": 1, "disk_total_gb": 9, "memory_used_mb": 1,'
    old += ' "memory_total_mb": 9, "gateway_state": "active", "gateway_memory_mb": 1}'
    stored = ResourceFigures.from_json(old)
    assert stored is not None and stored.reboot_required is None


@needs_root
async def test_read_from_servers_and_shown_by_fleet(world: World) -> None:
    (up_to_date, _), (behind, _) = await active(world, "a@example.com", "b@example.com")
    line = UPDATES.splitlines()[1]
    script = (
        f"mkdir -p /var/lib/ocsim && echo '{line}' > /var/lib/ocsim/pending-upgrades\n"
        "touch /var/run/reboot-required\n"
    )
    instance = await world.instance(behind)
    result = await world.infra.ssh.run(instance["server_ip"], instance["ssh_host_key"], script)
    assert result.exit_status == 0, result.output
    async with world.core.db.transaction() as conn:  # an instance from before version tracking
        await conn.execute("UPDATE instances SET openclaw_version = NULL")

    summary = await resource_check(world, afternoon()).check()

    assert summary.checked == 2 and not summary.failed
    fresh = await figures(world, up_to_date)
    assert (fresh.updates_pending, fresh.reboot_required) == (0, False)
    stale = await figures(world, behind)
    assert (stale.updates_pending, stale.security_updates, stale.reboot_required) == (1, 1, True)
    assert stale.openclaw_version == "2026.9.6"
    assert (await world.instance(behind))["openclaw_version"] == "2026.9.6"  # learnt
    view = await fleet_view(RolloutStore(world.core.db, world.core.clock), "2026.9.6")
    assert view.versions == {"2026.9.6": [up_to_date, behind]}
    assert view.security_updates == {behind: 1} and view.reboot_required == [behind]
    assert view.up_to_date == 1 and view.os_unknown == []
