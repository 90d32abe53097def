"""Health incidents: what a run of failed gateway checks means, decided by rule.

The monitor checks; this module records. Consecutive failures open an incident at
the third (one alert and the cheap repair, a gateway restart) and escalate at the
tenth (one alert and a reboot); the first success closes it with one recovery notice
that gives the downtime. An incident that opens again within an hour of the last
recovery is a flap: repairs go on, but the operators hear of it once an hour at most.
A muted instance is checked and recorded like any other, and neither alerted nor
repaired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from core.admin_actions import queue_operation_in
from core.clock import from_iso, to_iso
from core.journal import notify_ops, record_event
from core.models import ACTOR_MONITOR, HealthStatus, OperationKind
from db.connection import Database
from db.records import update

log = logging.getLogger(__name__)

UNHEALTHY_AT = 3  # consecutive failures that open an incident and restart the gateway
REBOOT_AT = 10  # consecutive failures that reboot the server
FLAP_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class CheckResult:
    instance_id: str
    ok: bool
    checked_at: datetime
    error: str = ""  # why it failed ("timeout", "HTTP 502", "connection refused")


@dataclass(frozen=True)
class Verdict:
    """What one check changes: the instance's fields, and what follows from them."""

    fields: dict[str, Any]
    alert: tuple[str, str] | None = None  # (kind, text) for the ops group
    operation: OperationKind | None = None
    event: str | None = None  # health_incident | health_escalated | health_recovered


def _time(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


def describe(duration: timedelta) -> str:
    """A downtime as people say it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = int(duration.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def judge(instance: aiosqlite.Row, result: CheckResult) -> Verdict:
    """The rule for one check of one instance (pure: no database, no clock)."""
    now = result.checked_at
    muted_until = _time(instance["muted_until"])
    muted = muted_until is not None and muted_until > now
    status = instance["health_status"]
    if result.ok:
        return _success(instance, now, muted)
    return _failure(instance, result, now, muted, status)


def _success(instance: aiosqlite.Row, now: datetime, muted: bool) -> Verdict:
    fields: dict[str, Any] = {
        "health_status": HealthStatus.HEALTHY.value,
        "last_health_check": to_iso(now),
        "consecutive_failures": 0,
        "failing_since": None,
        # Uptime counts from the first healthy check after the gateway's last start.
        "healthy_since": instance["healthy_since"] or to_iso(now),
    }
    if instance["health_status"] != HealthStatus.UNHEALTHY:
        return Verdict(fields)
    fields |= {"last_recovered_at": to_iso(now), "incident_alerted": 0}
    since = _time(instance["failing_since"]) or now
    text = f"{instance['id']} is healthy again after {describe(now - since)} down"
    alert = ("instance_recovered", text) if instance["incident_alerted"] and not muted else None
    return Verdict(fields, alert=alert, event="health_recovered")


def _failure(
    instance: aiosqlite.Row, result: CheckResult, now: datetime, muted: bool, status: str
) -> Verdict:
    failures = int(instance["consecutive_failures"]) + 1
    fields: dict[str, Any] = {
        "last_health_check": to_iso(now),
        "consecutive_failures": failures,
        "failing_since": instance["failing_since"] or to_iso(now),
    }
    instance_id, why = instance["id"], result.error or "no answer"
    if failures == UNHEALTHY_AT or (failures > UNHEALTHY_AT and status != HealthStatus.UNHEALTHY):
        fields |= {"health_status": HealthStatus.UNHEALTHY.value, "healthy_since": None}
        if muted:
            return Verdict(fields, event="health_incident")
        recovered = _time(instance["last_recovered_at"])
        if recovered is not None and now - recovered < FLAP_WINDOW:
            flap_alerted = _time(instance["flap_alerted_at"])
            alert = None
            if flap_alerted is None or now - flap_alerted >= FLAP_WINDOW:
                fields["flap_alerted_at"] = to_iso(now)
                alert = (
                    "instance_flapping",
                    f"{instance_id} is flapping: unhealthy again {describe(now - recovered)} "
                    f"after recovering ({why}). The gateway is restarted each time; "
                    "alerts about it are held for an hour.",
                )
            return Verdict(
                fields,
                alert=alert,
                operation=OperationKind.RESTART_GATEWAY,
                event="health_incident",
            )
        fields["incident_alerted"] = 1
        return Verdict(
            fields,
            alert=(
                "instance_unhealthy",
                f"{instance_id} is unhealthy: {failures} failed health checks ({why}). "
                "Restarting the gateway.",
            ),
            operation=OperationKind.RESTART_GATEWAY,
            event="health_incident",
        )
    if failures == REBOOT_AT and not muted:
        fields["incident_alerted"] = 1
        return Verdict(
            fields,
            alert=(
                "instance_unhealthy",
                f"{instance_id} is still unhealthy after a gateway restart: {failures} failed "
                f"checks ({why}). Rebooting the server.",
            ),
            operation=OperationKind.REBOOT,
            event="health_escalated",
        )
    return Verdict(fields)


class HealthRecorder:
    """Applies check results: the fields, the alert, the operation and the event of each
    commit together, so a crash never leaves an alert without its repair or twice."""

    def __init__(self, db: Database, wake: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.wake = wake

    async def record(self, results: Sequence[CheckResult]) -> int:
        """Apply a batch of results in one transaction; returns how many queued a repair."""
        if not results:
            return 0
        repairs = 0
        async with self.db.transaction() as conn:
            for result in results:
                rows = await conn.execute_fetchall(
                    "SELECT * FROM instances WHERE id = ?", (result.instance_id,)
                )
                instance = next(iter(rows), None)
                if instance is None:
                    continue
                repairs += await self._apply(conn, instance, result)
        if repairs:
            self.wake()
        return repairs

    async def _apply(
        self, conn: aiosqlite.Connection, instance: aiosqlite.Row, result: CheckResult
    ) -> int:
        verdict = judge(instance, result)
        now, instance_id = result.checked_at, instance["id"]
        await update(conn, "instances", "id", instance_id, verdict.fields)
        if verdict.event is not None:
            await record_event(
                conn,
                now,
                ACTOR_MONITOR,
                verdict.event,
                instance_id=instance_id,
                customer_id=instance["customer_id"],
                payload={"failures": verdict.fields["consecutive_failures"], "error": result.error},
            )
            log.info(
                "%s after %d failures (%s)",
                verdict.event,
                instance["consecutive_failures"],
                result.error or "ok",
                extra={"instance_id": instance_id},
            )
        if verdict.alert is not None:
            kind, text = verdict.alert
            await notify_ops(
                conn, now, kind, text, instance_id=instance_id, customer_id=instance["customer_id"]
            )
        if verdict.operation is None:
            return 0
        await queue_operation_in(conn, now, instance, verdict.operation, ACTOR_MONITOR)
        return 1
