"""The lifecycle service: the only writer of desired state.

Webhooks, admin commands and the monitor record facts through `core/`; this module
derives each instance's desired state from them and persists it. Callers wake the
reconciler (`wake`) after their transaction commits, so it reads what they wrote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiosqlite

from core.clock import Clock, to_iso
from core.facts import admin_facts, billing_facts
from core.ids import new_id, server_name
from core.journal import notify_customer, notify_ops, record_event
from core.models import AdminHold, DesiredState, Plan, Status
from core.policy import Decision, PolicyTimings, decide
from db.connection import Database
from db.records import fetch_all, fetch_one, insert, update

log = logging.getLogger(__name__)


class LifecycleError(Exception):
    """A request the lifecycle refuses; `code` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotFound(LifecycleError):
    def __init__(self, what: str) -> None:
        super().__init__("not_found", f"{what} not found")


class Lifecycle:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        timings: PolicyTimings,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.timings = timings
        self.wake = wake

    async def instance(self, conn: aiosqlite.Connection, instance_id: str) -> aiosqlite.Row:
        row = await fetch_one(conn, "SELECT * FROM instances WHERE id = ?", (instance_id,))
        if row is None:
            raise NotFound(f"instance {instance_id}")
        return row

    async def create_instance(
        self,
        conn: aiosqlite.Connection,
        customer_id: str,
        plan: Plan,
        actor: str,
        *,
        subscription_id: str | None = None,
        purchase_id: str | None = None,
    ) -> str:
        now = self.clock.now()
        instance_id = new_id("inst")
        await insert(
            conn,
            "instances",
            {
                "id": instance_id,
                "customer_id": customer_id,
                "subscription_id": subscription_id,
                "purchase_id": purchase_id,
                "plan": plan.value,
                "status": Status.PROVISIONING.value,
                "desired_state": DesiredState.ACTIVE.value,
                "desired_since": to_iso(now),
                "server_name": server_name(instance_id),
                "created_at": to_iso(now),
                "updated_at": to_iso(now),
            },
        )
        await record_event(
            conn,
            now,
            actor,
            "instance_created",
            instance_id=instance_id,
            customer_id=customer_id,
            payload={"plan": plan.value},
        )
        log.info("instance created", extra={"instance_id": instance_id, "plan": plan.value})
        await self.reevaluate(conn, instance_id, actor)
        return instance_id

    async def reevaluate(
        self, conn: aiosqlite.Connection, instance_id: str, actor: str
    ) -> Decision | None:
        """Derive the desired state from the facts and persist it; `destroyed` is final."""
        instance = await self.instance(conn, instance_id)
        if instance["desired_state"] == DesiredState.DESTROYED:
            return None
        now = self.clock.now()
        admin = admin_facts(instance)
        decision = decide(await billing_facts(conn, instance), admin, now, self.timings)
        before = DesiredState(instance["desired_state"])
        changes: dict[str, Any] = {
            "desired_reason": decision.reason,
            "next_deadline_at": to_iso(decision.next_deadline) if decision.next_deadline else None,
        }
        if decision.desired_state is not before:
            changes |= {
                "desired_state": decision.desired_state.value,
                "desired_since": to_iso(now),
                "updated_at": to_iso(now),
            }
        if admin.hold is AdminHold.RESUMED and not decision.admin_override:
            # The admin's resume has lapsed: billing decides again from here on.
            changes |= {"admin_hold": None, "hold_reason": None, "hold_actor": None}
            changes["hold_at"] = None
        await update(conn, "instances", "id", instance_id, changes)
        if decision.desired_state is not before:
            await self._desired_state_changed(conn, instance, before, decision, actor)
        return decision

    async def _desired_state_changed(
        self,
        conn: aiosqlite.Connection,
        instance: aiosqlite.Row,
        before: DesiredState,
        decision: Decision,
        actor: str,
    ) -> None:
        now = self.clock.now()
        instance_id, customer_id = instance["id"], instance["customer_id"]
        after = decision.desired_state
        await record_event(
            conn,
            now,
            actor,
            "desired_state_changed",
            instance_id=instance_id,
            customer_id=customer_id,
            payload={"from": before.value, "to": after.value, "reason": decision.reason},
        )
        log.info(
            "desired state %s -> %s (%s)",
            before,
            after,
            decision.reason,
            extra={"instance_id": instance_id, "actor": actor},
        )
        await notify_ops(
            conn,
            now,
            f"instance_{after.value}",
            f"{instance_id}: {before.value} → {after.value} ({decision.reason}; by {actor})",
            instance_id=instance_id,
            customer_id=customer_id,
        )
        if after is not DesiredState.DESTROYED:
            # An admin's reason is internal; the customer hears only that it was the operators.
            reason = "the operators" if decision.by_admin else decision.reason
            await notify_customer(
                conn,
                now,
                customer_id,
                f"instance_{after.value}",
                instance_id=instance_id,
                ref={"reason": reason},
            )

    async def reevaluate_due(self, actor: str) -> int:
        """The billing clock: re-derive every instance whose deadline has passed."""
        now = to_iso(self.clock.now())
        due = await self.db.fetch_all(
            "SELECT id FROM instances WHERE next_deadline_at IS NOT NULL AND next_deadline_at <= ?"
            " AND desired_state != 'destroyed'",
            (now,),
        )
        done = 0
        for row in due:
            try:
                async with self.db.transaction() as conn:
                    await self.reevaluate(conn, row["id"], actor)
                done += 1
            except Exception:  # one broken instance must not stop the clock for the rest
                log.exception("re-evaluation failed", extra={"instance_id": row["id"]})
        if done:
            self.wake()
        return done

    async def warn_due_suspensions(self, ahead: timedelta) -> int:
        """Warn each customer whose instance billing will suspend within `ahead`, once per
        deadline (a new deadline, e.g. after a failed retry, warns again)."""
        now = self.clock.now()
        due = await self.db.fetch_all(
            "SELECT id, customer_id, next_deadline_at, desired_reason FROM instances "
            "WHERE desired_state = 'active' AND next_deadline_at IS NOT NULL "
            "AND next_deadline_at > ? AND next_deadline_at <= ? "
            "AND (suspension_warned_for IS NULL OR suspension_warned_for != next_deadline_at)",
            (to_iso(now), to_iso(now + ahead)),
        )
        for row in due:
            reason = str(row["desired_reason"]).removesuffix("; suspends at deadline")
            async with self.db.transaction() as conn:
                await update(
                    conn,
                    "instances",
                    "id",
                    row["id"],
                    {"suspension_warned_for": row["next_deadline_at"]},
                )
                await notify_customer(
                    conn,
                    now,
                    row["customer_id"],
                    "suspension_warning",
                    instance_id=row["id"],
                    ref={"at": row["next_deadline_at"], "reason": reason},
                )
        if due:
            self.wake()
        return len(due)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


async def live_instances(conn: aiosqlite.Connection, column: str, key: str) -> list[aiosqlite.Row]:
    """The not-destroyed instances of a subscription or purchase."""
    if column not in ("subscription_id", "purchase_id"):
        raise ValueError(column)
    return await fetch_all(
        conn,
        f"SELECT * FROM instances WHERE {column} = ? "  # noqa: S608
        "AND desired_state != 'destroyed'",
        (key,),
    )
