"""Resource figures of customer servers and what they mean, decided by rule.

The monitor reads disk, memory and the gateway's memory over SSH (`monitor/resources.py`);
this module records the figures (`instances.resources`, for /status) and decides:

- Disk above `disk_percent`: one `disk_high` alert. Again only after the disk went back
  to or below the threshold (one `disk_ok` notice) and crossed it anew, or as a reminder
  when it is still high `reminder` (24 h) after the last alert: a full disk does not fix
  itself, and an alert from last week is forgotten.
- Gateway memory above `gateway_memory_mb` (OpenClaw leaks): one `gateway_memory_high`
  alert, and a gateway restart due at the start of the instance's quiet window (the night
  hour its unattended upgrades reboot in; at once when the check runs inside that hour).
  The deadline lives in `instances.memory_restart_due_at`, so a restart of our process
  loses none; `queue_due_restarts` queues the `restart_gateway` once it has passed. Memory
  back under the threshold before then (someone restarted the gateway) cancels the
  restart; once it is back under, the operators who heard of the leak hear it is over
  (`gateway_memory_ok`). Still high after the restart: another one in the next window,
  without another alert.
- A muted instance is checked and its figures recorded like any other, but neither
  alerted nor restarted: nothing new is opened while it is muted (the next check after
  the mute opens it), and a restart falling due while it is muted moves to the next
  quiet window.
- A failed reading (unreachable, unparsable) is recorded (`resources_error`, since
  `resources_error_at`), never alerted: reachability is the health monitor's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from core.admin_actions import AdminActions, queue_operation_in
from core.clock import Clock, from_iso, to_iso
from core.journal import notify_ops, record_event
from core.models import ACTOR_MONITOR, DesiredState, OperationKind, Status
from db.connection import Database
from db.records import fetch_one, update

log = logging.getLogger(__name__)

DISK_REMINDER = timedelta(hours=24)
ERROR_CHARS = 300

# Alert kinds (notifications.kind, for the ops group) and event types.
DISK_HIGH = "disk_high"
DISK_OK = "disk_ok"
MEMORY_HIGH = "gateway_memory_high"
MEMORY_OK = "gateway_memory_ok"
RESTART_CANCELED = "gateway_restart_canceled"  # event only
RESTART_MOVED = "gateway_restart_moved"  # event only: fell due while muted
UNREADABLE = "resources_unreadable"  # event only: the first failed reading of a run


@dataclass(frozen=True)
class ResourceFigures:
    """One reading of a server, as stored in `instances.resources` (JSON)."""

    disk_used_pct: float
    disk_used_gb: float
    disk_total_gb: float
    memory_used_mb: int
    memory_total_mb: int
    gateway_state: str  # systemd's ActiveState: active, inactive, failed, activating...
    gateway_memory_mb: int | None  # None when systemd has no figure (the unit is not running)
    # OS updates and the OpenClaw version, for /fleet (None: not read, e.g. older figures).
    updates_pending: int | None = None  # packages apt would upgrade
    security_updates: int | None = None  # of which from the security pocket
    reboot_required: bool | None = None  # /var/run/reboot-required is there
    openclaw_version: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ResourceFigures | None:
        """The stored figures, or None when there are none (or they are unreadable)."""
        if not text:
            return None
        try:
            values = json.loads(text)
            known = [name for name in cls.__dataclass_fields__ if name in values]
            return cls(**{name: values[name] for name in known})
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class Thresholds:
    disk_percent: float
    gateway_memory_mb: int
    reminder: timedelta = DISK_REMINDER


@dataclass(frozen=True)
class AlertState:
    """What the previous checks left: the alerts told and the restart planned."""

    muted: bool = False
    disk_alerted_at: datetime | None = None
    memory_alerted_at: datetime | None = None
    restart_due_at: datetime | None = None

    @classmethod
    def from_row(cls, row: aiosqlite.Row, now: datetime) -> AlertState:
        return cls(
            muted=is_muted(row["muted_until"], now),
            disk_alerted_at=_time(row["disk_alerted_at"]),
            memory_alerted_at=_time(row["memory_alerted_at"]),
            restart_due_at=_time(row["memory_restart_due_at"]),
        )


@dataclass(frozen=True)
class Judgement:
    """What one reading changes: the new alert state, what to tell, what to record."""

    state: AlertState
    alerts: tuple[tuple[str, str], ...] = ()  # (kind, text) for the ops group
    events: tuple[tuple[str, dict[str, Any]], ...] = field(default=())


def _time(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


def is_muted(muted_until: str | None, now: datetime) -> bool:
    until = _time(muted_until)
    return until is not None and until > now


def quiet_window_start(now: datetime, hour: int, *, include_current: bool = True) -> datetime:
    """The start of the next quiet window (`hour`:00–:59 UTC). Inside a window: `now`
    itself, or with `include_current=False` the start of tomorrow's."""
    now = now.astimezone(UTC)
    if include_current and now.hour == hour:
        return now
    start = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return start if start > now else start + timedelta(days=1)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def judge(
    instance_id: str,
    figures: ResourceFigures,
    state: AlertState,
    thresholds: Thresholds,
    now: datetime,
    quiet_hour: int,
) -> Judgement:
    """The rule for one reading of one instance (pure: no database, no clock)."""
    alerts: list[tuple[str, str]] = []
    events: list[tuple[str, dict[str, Any]]] = []
    muted = state.muted
    disk_alerted, memory_alerted, due = (
        state.disk_alerted_at,
        state.memory_alerted_at,
        state.restart_due_at,
    )

    disk = figures.disk_used_pct
    disk_limit = thresholds.disk_percent
    if disk > disk_limit:
        remind = disk_alerted is not None and now - disk_alerted >= thresholds.reminder
        if not muted and (disk_alerted is None or remind):
            text = (
                f"{instance_id}: disk {disk:g} % full ({figures.disk_used_gb:g} of"
                f" {figures.disk_total_gb:g} GB; alert above {disk_limit:g} %)"
            )
            if remind and disk_alerted is not None:
                text += f", still since the alert of {_stamp(disk_alerted)}"
            alerts.append((DISK_HIGH, text))
            events.append((DISK_HIGH, {"disk_used_pct": disk, "reminder": remind}))
            disk_alerted = now
    elif disk_alerted is not None:
        if not muted:
            alerts.append((DISK_OK, f"{instance_id}: disk back to {disk:g} % full"))
        events.append((DISK_OK, {"disk_used_pct": disk}))
        disk_alerted = None

    memory = figures.gateway_memory_mb
    memory_limit = thresholds.gateway_memory_mb
    if memory is not None and memory > memory_limit:
        if not muted:
            if due is None:
                due = quiet_window_start(now, quiet_hour)
            if memory_alerted is None:
                when = "now" if due <= now else f"at {_stamp(due)} (its quiet hour)"
                alerts.append(
                    (
                        MEMORY_HIGH,
                        f"{instance_id}: gateway uses {memory} MB (alert above {memory_limit} MB);"
                        f" restarting it {when}",
                    )
                )
                events.append(
                    (MEMORY_HIGH, {"gateway_memory_mb": memory, "restart_at": to_iso(due)})
                )
                memory_alerted = now
    else:
        if due is not None:
            events.append((RESTART_CANCELED, {"gateway_memory_mb": memory, "due_at": to_iso(due)}))
            due = None
        if memory_alerted is not None:
            if not muted:
                if memory is None:
                    text = (
                        f"{instance_id}: gateway memory alert closed: the gateway is"
                        f" {figures.gateway_state}"
                    )
                else:
                    text = f"{instance_id}: gateway memory back to {memory} MB"
                alerts.append((MEMORY_OK, text))
            events.append((MEMORY_OK, {"gateway_memory_mb": memory}))
            memory_alerted = None

    new_state = replace(
        state, disk_alerted_at=disk_alerted, memory_alerted_at=memory_alerted, restart_due_at=due
    )
    return Judgement(new_state, tuple(alerts), tuple(events))


_ROW = (
    "SELECT id, customer_id, status, desired_state, muted_until, disk_alerted_at,"
    " memory_alerted_at, memory_restart_due_at, resources_error, resources_error_at"
    " FROM instances WHERE id = ?"
)


def _opt_iso(moment: datetime | None) -> str | None:
    return to_iso(moment) if moment is not None else None


class ResourceRecords:
    """The database side of resource checks: figures, alerts, the leak's restart."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        admin: AdminActions,
        thresholds: Thresholds,
        quiet_hour: Callable[[str], int],
    ) -> None:
        self.db = db
        self.clock = clock
        self.admin = admin
        self.thresholds = thresholds
        self.quiet_hour = quiet_hour

    async def record(self, instance_id: str, figures: ResourceFigures) -> Judgement | None:
        """Store a good reading and act on it (alerts, the restart's deadline). None when
        the instance is no longer active (suspended or destroyed meanwhile): nothing
        written. The restart itself is queued by `queue_due_restarts`."""
        async with self.db.transaction() as conn:
            row = await fetch_one(conn, _ROW, (instance_id,))
            if row is None or row["status"] != Status.ACTIVE:
                return None
            now = self.clock.now()
            judgement = judge(
                instance_id,
                figures,
                AlertState.from_row(row, now),
                self.thresholds,
                now,
                self.quiet_hour(instance_id),
            )
            state = judgement.state
            fields = {
                "resources": figures.to_json(),
                "resources_checked_at": to_iso(now),
                "resources_error": None,
                "resources_error_at": None,
                "disk_alerted_at": _opt_iso(state.disk_alerted_at),
                "memory_alerted_at": _opt_iso(state.memory_alerted_at),
                "memory_restart_due_at": _opt_iso(state.restart_due_at),
            }
            if figures.openclaw_version:  # what the server runs, as read with the figures
                fields["openclaw_version"] = figures.openclaw_version
            await update(conn, "instances", "id", instance_id, fields)
            customer_id = row["customer_id"]
            for event_type, payload in judgement.events:
                await record_event(
                    conn,
                    now,
                    ACTOR_MONITOR,
                    event_type,
                    instance_id=instance_id,
                    customer_id=customer_id,
                    payload=payload,
                )
            for kind, text in judgement.alerts:
                await notify_ops(
                    conn, now, kind, text, instance_id=instance_id, customer_id=customer_id
                )
        return judgement

    async def record_failure(self, instance_id: str, error: str) -> None:
        """A reading that failed: kept with the instance (an event at the first failure of
        a run), never alerted. The last good figures stay."""
        error = error.strip()[:ERROR_CHARS] or "unknown error"
        async with self.db.transaction() as conn:
            row = await fetch_one(conn, _ROW, (instance_id,))
            if row is None or row["status"] != Status.ACTIVE:
                return
            now = self.clock.now()
            first = row["resources_error"] is None
            await update(
                conn,
                "instances",
                "id",
                instance_id,
                {
                    "resources_error": error,
                    "resources_error_at": to_iso(now) if first else row["resources_error_at"],
                },
            )
            if first:
                await record_event(
                    conn,
                    now,
                    ACTOR_MONITOR,
                    UNREADABLE,
                    instance_id=instance_id,
                    customer_id=row["customer_id"],
                    payload={"error": error},
                )

    async def queue_due_restarts(self) -> list[str]:
        """Queue the `restart_gateway` of every leak whose quiet window has come (cheap:
        the database only, so it may run more often than the checks). Returns the
        instances queued. A muted instance's restart moves to its next window; one of an
        instance no longer active is dropped (its gateway stops or starts anew anyway)."""
        now = self.clock.now()
        rows = await self.db.fetch_all(
            "SELECT id, memory_restart_due_at FROM instances"
            " WHERE memory_restart_due_at IS NOT NULL AND memory_restart_due_at <= ?"
            " ORDER BY memory_restart_due_at",
            (to_iso(now),),
        )
        queued = []
        for candidate in rows:
            if await self._queue_due(candidate["id"], candidate["memory_restart_due_at"], now):
                queued.append(str(candidate["id"]))
        return queued

    async def _queue_due(self, instance_id: str, due_at: str, now: datetime) -> bool:
        async with self.db.transaction() as conn:
            row = await fetch_one(conn, _ROW, (instance_id,))
            if row is None or row["memory_restart_due_at"] != due_at:
                return False  # a check changed it meanwhile
            active = row["status"] == Status.ACTIVE and row["desired_state"] == DesiredState.ACTIVE
            if not active:
                await self._set_due(conn, row, None, now, RESTART_CANCELED, row["status"])
                return False
            if is_muted(row["muted_until"], now):
                later = quiet_window_start(now, self.quiet_hour(instance_id), include_current=False)
                await self._set_due(conn, row, later, now, RESTART_MOVED, "muted")
                return False
            # Queued and the deadline cleared together; one still pending is not queued twice.
            await queue_operation_in(conn, now, row, OperationKind.RESTART_GATEWAY, ACTOR_MONITOR)
            await update(conn, "instances", "id", instance_id, {"memory_restart_due_at": None})
        self.admin.lifecycle.wake()
        return True

    async def _set_due(
        self,
        conn: aiosqlite.Connection,
        row: aiosqlite.Row,
        due: datetime | None,
        now: datetime,
        event_type: str,
        reason: str,
    ) -> None:
        await update(conn, "instances", "id", row["id"], {"memory_restart_due_at": _opt_iso(due)})
        payload: dict[str, Any] = {"reason": reason, "due_at": row["memory_restart_due_at"]}
        if due is not None:
            payload["moved_to"] = to_iso(due)
        await record_event(
            conn,
            now,
            ACTOR_MONITOR,
            event_type,
            instance_id=row["id"],
            customer_id=row["customer_id"],
            payload=payload,
        )
