"""The monitor's jobs, built from the settings and wired to the parts they observe."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from core.health import HealthRecorder
from core.journal import notify_ops
from core.services import CoreServices
from core.settings import Settings
from core.snapshot_schedule import queue_weekly_snapshots
from monitor.billing_clock import billing_tick
from monitor.db_backup import BackupError, backup_database, backup_due
from monitor.health import HealthSweep
from monitor.prices import refresh_prices_if_due
from monitor.resources import ResourceCheck
from monitor.scheduler import Job, MonitorScheduler
from monitor.vps_status import VpsStatusCheck
from provisioner.infra import Infra
from provisioner.transitions import delete_expired_snapshots

HOURLY_S = 3600.0  # jobs due by the day or week look this often whether they are due
QUIET_RESTARTS_S = 300.0


def build_monitor(
    settings: Settings, core: CoreServices, infra: Infra, wake: Callable[[], None]
) -> MonitorScheduler:
    db, clock = core.db, core.clock
    health = HealthSweep(
        db,
        clock,
        HealthRecorder(db, wake),
        gateway_port=settings.gateway_port,
        timeout_s=settings.health_check_timeout_s,
        concurrency=settings.health_check_concurrency,
        start_grace_s=settings.start_grace_s,
    )
    warn_ahead = timedelta(hours=settings.suspension_warning_hours)

    async def weekly_snapshots() -> None:
        await queue_weekly_snapshots(db, clock, wake=wake)

    async def billing_clock() -> None:
        await billing_tick(core.lifecycle, warn_ahead)

    resources = ResourceCheck(
        db,
        clock,
        infra.ssh,
        core.admin,
        disk_alert_percent=settings.disk_alert_percent,
        memory_alert_mb=settings.gateway_memory_alert_mb,
    )

    vps_status = VpsStatusCheck(db, clock, infra.hetzner, wake=wake)

    async def prices() -> None:
        await refresh_prices_if_due(
            db,
            clock,
            infra.hetzner,
            server_type=settings.hcloud_server_type,
            locations=settings.hcloud_locations,
        )

    async def quiet_restarts() -> None:
        await resources.queue_due_restarts()

    async def database_backup() -> None:
        """Daily, decided by the newest file in BACKUP_DIR (a restart repeats none)."""
        if not backup_due(settings.backup_dir, clock.now()):
            return
        try:
            await backup_database(
                settings.database_path,
                settings.backup_dir,
                clock.now(),
                settings.backup_s3_url.get_secret_value(),
            )
        except BackupError as error:  # its text names no secret
            async with db.transaction() as conn:
                await notify_ops(conn, clock.now(), "backup_failed", f"database backup: {error}")
            raise

    jobs = [
        Job("health", settings.health_check_interval_s, health.sweep),
        Job("billing_clock", settings.billing_tick_s, billing_clock),
        Job("vps_status", settings.status_check_interval_s, vps_status.check),
        Job("resources", settings.resource_check_interval_s, resources.check),
        # A leaking gateway's restart waits for its quiet hour: look often enough to hit it.
        Job("quiet_restarts", QUIET_RESTARTS_S, quiet_restarts),
        Job("weekly_snapshots", HOURLY_S, weekly_snapshots),
        Job("prices", HOURLY_S, prices),  # refreshed when a day old
        Job("database_backup", HOURLY_S, database_backup),
        # Snapshots past their delete-after date (30 days after a destruction) go.
        Job("snapshot_retention", 6 * HOURLY_S, lambda: delete_expired_snapshots(infra)),
    ]
    return MonitorScheduler(db, clock, jobs)
