"""The lifecycle service: the only writer of facts, desired state and operations.

Webhooks, admin commands and the monitor call in here; nothing acts on a server
directly. After each change the reconciler is woken (`wake`), and it converges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from core.clock import Clock, from_iso, to_iso
from core.ids import new_id, server_name
from core.journal import notify_customer, notify_ops, record_event
from core.models import (
    AdminHold,
    DesiredState,
    OperationKind,
    OperationState,
    Plan,
    Status,
    SubscriptionStatus,
)
from core.policy import AdminFacts, BillingFacts, Decision, PolicyTimings, decide, resume_hold
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


@dataclass(frozen=True)
class ProvisionResult:
    instance_id: str
    status: str
    created: bool


def _time(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


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

    # -- instances ---------------------------------------------------------------------

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

    async def _facts(
        self, conn: aiosqlite.Connection, instance: aiosqlite.Row
    ) -> tuple[BillingFacts, AdminFacts]:
        admin = AdminFacts(
            hold=AdminHold(instance["admin_hold"]) if instance["admin_hold"] else None,
            hold_at=_time(instance["hold_at"]),
            hold_reason=instance["hold_reason"],
            destroyed_at=_time(instance["admin_destroyed_at"]),
        )
        if instance["subscription_id"]:
            sub = await fetch_one(
                conn, "SELECT * FROM subscriptions WHERE id = ?", (instance["subscription_id"],)
            )
            assert sub is not None  # foreign key
            billing = BillingFacts(
                plan=Plan(instance["plan"]),
                changed_at=from_iso(sub["changed_at"]),
                subscription_status=SubscriptionStatus(sub["status"]),
                past_due_since=_time(sub["past_due_since"]),
                paused_at=_time(sub["paused_at"]),
                canceled_at=_time(sub["canceled_at"]),
                refunded_at=_time(sub["refunded_at"]),
            )
        elif instance["purchase_id"]:
            purchase = await fetch_one(
                conn, "SELECT * FROM purchases WHERE id = ?", (instance["purchase_id"],)
            )
            assert purchase is not None
            billing = BillingFacts(
                Plan.LIFETIME,
                from_iso(purchase["changed_at"]),
                refunded_at=_time(purchase["refunded_at"]),
            )
        else:
            billing = BillingFacts(Plan.MANUAL, from_iso(instance["created_at"]))
        return billing, admin

    async def reevaluate(
        self, conn: aiosqlite.Connection, instance_id: str, actor: str
    ) -> Decision | None:
        """Derive the desired state from the facts and persist it; `destroyed` is final."""
        instance = await fetch_one(conn, "SELECT * FROM instances WHERE id = ?", (instance_id,))
        if instance is None:
            raise NotFound(f"instance {instance_id}")
        if instance["desired_state"] == DesiredState.DESTROYED:
            return None
        now = self.clock.now()
        billing, admin = await self._facts(conn, instance)
        decision = decide(billing, admin, now, self.timings)
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
        if admin.hold is AdminHold.RESUMED and decision.reason != "resumed by an admin":
            changes |= {
                "admin_hold": None,
                "hold_reason": None,
                "hold_actor": None,
                "hold_at": None,
            }  # the override lapsed
        await update(conn, "instances", "id", instance_id, changes)
        if decision.desired_state is not before:
            await self._desired_state_changed(conn, instance, before, decision, actor)
            self.wake()
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
            await notify_customer(
                conn,
                now,
                customer_id,
                f"instance_{after.value}",
                instance_id=instance_id,
                ref={"reason": decision.reason},
            )

    async def reevaluate_due(self, actor: str) -> int:
        """The billing clock: re-derive every instance whose deadline has passed."""
        now = to_iso(self.clock.now())
        due = await self.db.fetch_all(
            "SELECT id FROM instances WHERE next_deadline_at IS NOT NULL AND next_deadline_at <= ?"
            " AND desired_state != 'destroyed'",
            (now,),
        )
        for row in due:
            async with self.db.transaction() as conn:
                await self.reevaluate(conn, row["id"], actor)
        return len(due)

    async def _instance(self, conn: aiosqlite.Connection, instance_id: str) -> aiosqlite.Row:
        row = await fetch_one(conn, "SELECT * FROM instances WHERE id = ?", (instance_id,))
        if row is None:
            raise NotFound(f"instance {instance_id}")
        return row

    # -- admin facts ----------------------------------------------------------------------

    async def suspend(self, instance_id: str, reason: str, actor: str) -> Decision | None:
        if not reason.strip():
            raise LifecycleError("invalid_input", "a suspension needs a reason")
        async with self.db.transaction() as conn:
            instance = await self._instance(conn, instance_id)
            self._refuse_destroyed(instance)
            now = self.clock.now()
            await update(
                conn,
                "instances",
                "id",
                instance_id,
                {
                    "admin_hold": AdminHold.SUSPENDED.value,
                    "hold_reason": reason.strip()[:500],
                    "hold_actor": actor,
                    "hold_at": to_iso(now),
                },
            )
            await record_event(
                conn,
                now,
                actor,
                "admin_suspended",
                instance_id=instance_id,
                customer_id=instance["customer_id"],
                payload={"reason": reason.strip()[:500]},
            )
            return await self.reevaluate(conn, instance_id, actor)

    async def resume(self, instance_id: str, actor: str) -> Decision | None:
        async with self.db.transaction() as conn:
            instance = await self._instance(conn, instance_id)
            self._refuse_destroyed(instance)
            now = self.clock.now()
            billing, _ = await self._facts(conn, instance)
            hold = resume_hold(billing, now, self.timings)
            await update(
                conn,
                "instances",
                "id",
                instance_id,
                {
                    "admin_hold": hold.value if hold else None,
                    "hold_reason": None,
                    "hold_actor": actor if hold else None,
                    "hold_at": to_iso(now) if hold else None,
                },
            )
            await record_event(
                conn,
                now,
                actor,
                "admin_resumed",
                instance_id=instance_id,
                customer_id=instance["customer_id"],
            )
            return await self.reevaluate(conn, instance_id, actor)

    async def destroy(self, instance_id: str, actor: str) -> str | None:
        """Destroy for good. Returns a warning when the customer is still paying."""
        async with self.db.transaction() as conn:
            instance = await self._instance(conn, instance_id)
            self._refuse_destroyed(instance)
            billing, _ = await self._facts(conn, instance)
            now = self.clock.now()
            warning = None
            from core.policy import billing_decision  # local: keeps the import list short

            if (
                billing_decision(billing, now, self.timings).desired_state is DesiredState.ACTIVE
                and billing.plan is not Plan.MANUAL
            ):
                warning = f"the {billing.plan.value} plan of this instance is still paid"
            await update(conn, "instances", "id", instance_id, {"admin_destroyed_at": to_iso(now)})
            await record_event(
                conn,
                now,
                actor,
                "admin_destroyed",
                instance_id=instance_id,
                customer_id=instance["customer_id"],
                payload={"warning": warning} if warning else None,
            )
            await self.reevaluate(conn, instance_id, actor)
            return warning

    async def queue_operation(self, instance_id: str, kind: OperationKind, actor: str) -> int:
        async with self.db.transaction() as conn:
            instance = await self._instance(conn, instance_id)
            self._refuse_destroyed(instance)
            if kind is OperationKind.RETRY and instance["status"] != Status.FAILED:
                raise LifecycleError(
                    "conflict",
                    f"only a failed instance can be retried; {instance_id} is {instance['status']}",
                )
            pending = await fetch_one(
                conn,
                "SELECT id FROM operations WHERE instance_id = ? AND "
                "kind = ? AND state IN ('pending', 'running')",
                (instance_id, kind.value),
            )
            if pending is not None:
                return int(pending["id"])  # the same request twice queues it once
            now = to_iso(self.clock.now())
            operation_id = await insert(
                conn,
                "operations",
                {
                    "instance_id": instance_id,
                    "kind": kind.value,
                    "requested_by": actor,
                    "state": OperationState.PENDING.value,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            await record_event(
                conn,
                self.clock.now(),
                actor,
                "operation_queued",
                instance_id=instance_id,
                customer_id=instance["customer_id"],
                payload={"kind": kind.value, "operation_id": operation_id},
            )
        self.wake()
        return operation_id

    @staticmethod
    def _refuse_destroyed(instance: aiosqlite.Row) -> None:
        if instance["desired_state"] == DesiredState.DESTROYED:
            raise LifecycleError("conflict", f"instance {instance['id']} is destroyed")

    # -- customers and comped instances ---------------------------------------------------

    async def find_or_create_customer(
        self,
        conn: aiosqlite.Connection,
        *,
        paddle_customer_id: str | None,
        email: str = "",
        name: str | None = None,
    ) -> str:
        if paddle_customer_id:
            row = await fetch_one(
                conn, "SELECT id FROM customers WHERE paddle_customer_id = ?", (paddle_customer_id,)
            )
            if row is not None:
                return str(row["id"])
        now = to_iso(self.clock.now())
        customer_id = new_id("cust")
        await insert(
            conn,
            "customers",
            {
                "id": customer_id,
                "email": email,
                "name": name,
                "paddle_customer_id": paddle_customer_id,
                "created_at": now,
                "updated_at": now,
                "contact_next_attempt_at": now if paddle_customer_id and not email else None,
            },
        )
        return customer_id

    async def provision(
        self, email: str, name: str | None, subscription_id: str | None, actor: str
    ) -> ProvisionResult:
        """POST /api/provision: a comped instance, or one billed by a named subscription."""
        async with self.db.transaction() as conn:
            if subscription_id:
                live = await fetch_one(
                    conn,
                    "SELECT id, status FROM instances WHERE "
                    "subscription_id = ? AND desired_state != 'destroyed'",
                    (subscription_id,),
                )
                if live is not None:
                    return ProvisionResult(live["id"], live["status"], created=False)
                sub = await fetch_one(
                    conn, "SELECT customer_id FROM subscriptions WHERE id = ?", (subscription_id,)
                )
                if sub is not None:
                    customer_id = str(sub["customer_id"])
                else:
                    customer_id = await self.find_or_create_customer(
                        conn, paddle_customer_id=None, email=email, name=name
                    )
                    now = to_iso(self.clock.now())
                    # Paddle's events fill in the real status; until then an admin's word holds.
                    await insert(
                        conn,
                        "subscriptions",
                        {
                            "id": subscription_id,
                            "customer_id": customer_id,
                            "plan": Plan.MONTHLY.value,
                            "status": SubscriptionStatus.ACTIVE.value,
                            "changed_at": now,
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
                instance_id = await self.create_instance(
                    conn, customer_id, Plan.MONTHLY, actor, subscription_id=subscription_id
                )
            else:
                customer_id = await self.find_or_create_customer(
                    conn, paddle_customer_id=None, email=email, name=name
                )
                instance_id = await self.create_instance(conn, customer_id, Plan.MANUAL, actor)
            await notify_ops(
                conn,
                self.clock.now(),
                "instance_requested",
                f"{instance_id}: provisioning requested by {actor}",
                instance_id=instance_id,
                customer_id=customer_id,
            )
        self.wake()
        return ProvisionResult(instance_id, Status.PROVISIONING.value, created=True)

    async def set_customer_contact(
        self, customer_id: str, email: str, name: str | None, actor: str
    ) -> None:
        """Paddle's API answered: fill in the email and name (never erase a known email)."""
        async with self.db.transaction() as conn:
            now = to_iso(self.clock.now())
            row = await fetch_one(
                conn, "SELECT email, name FROM customers WHERE id = ?", (customer_id,)
            )
            if row is None:
                raise NotFound(f"customer {customer_id}")
            await update(
                conn,
                "customers",
                "id",
                customer_id,
                {
                    "email": email or row["email"],
                    "name": name or row["name"],
                    "contact_synced_at": now,
                    "contact_next_attempt_at": None,
                    "updated_at": now,
                },
            )
            if email and email != row["email"]:
                await record_event(
                    conn, self.clock.now(), actor, "customer_contact", customer_id=customer_id
                )

    async def contact_failed(self, customer_id: str, error: str, retry_at: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE customers SET contact_attempts = contact_attempts + 1, "
                "contact_next_attempt_at = ? WHERE id = ?",
                (to_iso(retry_at), customer_id),
            )
        log.warning("paddle customer lookup failed: %s", error, extra={"customer_id": customer_id})


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
