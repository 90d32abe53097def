"""What admins do (API and Telegram): record their facts, queue operations.

Each action is one transaction; the reconciler is woken after it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from core.clock import to_iso
from core.customers import find_or_create_customer
from core.facts import billing_facts
from core.journal import notify_ops, record_event
from core.lifecycle import Lifecycle, LifecycleError
from core.models import (
    AdminHold,
    DesiredState,
    OperationKind,
    OperationState,
    Plan,
    Status,
    SubscriptionStatus,
)
from core.policy import Decision, billing_decision, resume_hold
from db.records import fetch_one, insert, update

MAX_REASON = 500


@dataclass(frozen=True)
class ProvisionResult:
    instance_id: str
    status: str
    created: bool


async def queue_operation_in(
    conn: aiosqlite.Connection,
    now: datetime,
    instance: aiosqlite.Row,
    kind: OperationKind,
    actor: str,
) -> int:
    """Queue an operation inside the caller's transaction; one already pending or running
    of the same kind is returned instead (a repeated request queues it once)."""
    pending = await fetch_one(
        conn,
        "SELECT id FROM operations WHERE instance_id = ? AND kind = ? "
        "AND state IN ('pending', 'running')",
        (instance["id"], kind.value),
    )
    if pending is not None:
        return int(pending["id"])
    operation_id = await insert(
        conn,
        "operations",
        {
            "instance_id": instance["id"],
            "kind": kind.value,
            "requested_by": actor,
            "state": OperationState.PENDING.value,
            "created_at": to_iso(now),
            "updated_at": to_iso(now),
        },
    )
    await record_event(
        conn,
        now,
        actor,
        "operation_queued",
        instance_id=instance["id"],
        customer_id=instance["customer_id"],
        payload={"kind": kind.value, "operation_id": operation_id},
    )
    return operation_id


def _refuse_destroyed(instance: aiosqlite.Row) -> None:
    if instance["desired_state"] == DesiredState.DESTROYED:
        raise LifecycleError("conflict", f"instance {instance['id']} is destroyed")


class AdminActions:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.db = lifecycle.db
        self.clock = lifecycle.clock

    async def suspend(self, instance_id: str, reason: str, actor: str) -> Decision | None:
        reason = reason.strip()[:MAX_REASON]
        if not reason:
            raise LifecycleError("invalid_input", "a suspension needs a reason")
        async with self.db.transaction() as conn:
            instance = await self.lifecycle.instance(conn, instance_id)
            _refuse_destroyed(instance)
            now = self.clock.now()
            hold = {"admin_hold": AdminHold.SUSPENDED.value, "hold_reason": reason}
            await update(
                conn,
                "instances",
                "id",
                instance_id,
                {**hold, "hold_actor": actor, "hold_at": to_iso(now)},
            )
            await record_event(
                conn,
                now,
                actor,
                "admin_suspended",
                instance_id=instance_id,
                customer_id=instance["customer_id"],
                payload={"reason": reason},
            )
            decision = await self.lifecycle.reevaluate(conn, instance_id, actor)
        self.lifecycle.wake()
        return decision

    async def resume(self, instance_id: str, actor: str) -> Decision | None:
        """Lift an admin hold; over a billing suspension, hold until billing speaks again."""
        async with self.db.transaction() as conn:
            instance = await self.lifecycle.instance(conn, instance_id)
            _refuse_destroyed(instance)
            now = self.clock.now()
            billing = await billing_facts(conn, instance)
            hold = resume_hold(billing, now, self.lifecycle.timings)
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
            decision = await self.lifecycle.reevaluate(conn, instance_id, actor)
        self.lifecycle.wake()
        return decision

    async def destroy(self, instance_id: str, actor: str) -> str | None:
        """Destroy for good. Returns a warning when the customer is still paying."""
        async with self.db.transaction() as conn:
            instance = await self.lifecycle.instance(conn, instance_id)
            _refuse_destroyed(instance)
            billing = await billing_facts(conn, instance)
            now = self.clock.now()
            paid = billing_decision(billing, now, self.lifecycle.timings)
            warning = None
            if paid.desired_state is DesiredState.ACTIVE and billing.plan is not Plan.MANUAL:
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
            await self.lifecycle.reevaluate(conn, instance_id, actor)
        self.lifecycle.wake()
        return warning

    async def queue_operation(self, instance_id: str, kind: OperationKind, actor: str) -> int:
        """Queue a one-shot operation; the same request while one is pending queues it once."""
        async with self.db.transaction() as conn:
            instance = await self.lifecycle.instance(conn, instance_id)
            _refuse_destroyed(instance)
            if kind is OperationKind.RETRY and instance["status"] != Status.FAILED:
                raise LifecycleError(
                    "conflict",
                    f"only a failed instance can be retried; {instance_id} is {instance['status']}",
                )
            operation_id = await queue_operation_in(conn, self.clock.now(), instance, kind, actor)
        self.lifecycle.wake()
        return operation_id

    async def provision(
        self, email: str, name: str | None, subscription_id: str | None, actor: str
    ) -> ProvisionResult:
        """POST /api/provision: a comped instance, or one billed by a named subscription,
        which that subscription's webhooks then never duplicate."""
        async with self.db.transaction() as conn:
            now = self.clock.now()
            if subscription_id:
                live = await fetch_one(
                    conn,
                    "SELECT id, status FROM instances WHERE subscription_id = ? "
                    "AND desired_state != 'destroyed'",
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
                    customer_id = await find_or_create_customer(
                        conn, now, paddle_customer_id=None, email=email, name=name
                    )
                    # Paddle's events fill in the real status; until then an admin's word holds.
                    await insert(
                        conn,
                        "subscriptions",
                        {
                            "id": subscription_id,
                            "customer_id": customer_id,
                            "plan": Plan.MONTHLY.value,
                            "status": SubscriptionStatus.ACTIVE.value,
                            "changed_at": to_iso(now),
                            "created_at": to_iso(now),
                            "updated_at": to_iso(now),
                        },
                    )
                instance_id = await self.lifecycle.create_instance(
                    conn, customer_id, Plan.MONTHLY, actor, subscription_id=subscription_id
                )
            else:
                customer_id = await find_or_create_customer(
                    conn, now, paddle_customer_id=None, email=email, name=name
                )
                instance_id = await self.lifecycle.create_instance(
                    conn, customer_id, Plan.MANUAL, actor
                )
            await notify_ops(
                conn,
                now,
                "instance_requested",
                f"{instance_id}: provisioning requested by {actor}",
                instance_id=instance_id,
                customer_id=customer_id,
            )
        self.lifecycle.wake()
        return ProvisionResult(instance_id, Status.PROVISIONING.value, created=True)
