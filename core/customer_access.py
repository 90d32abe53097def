"""What a customer may see and do from their own Telegram chat, and nothing more.

A chat becomes a customer's by the onboarding token of their checkout
(`t.me/<bot>?start=<token>`, single-use). Every query here is keyed by the customers
bound to the asking chat, so one customer never sees another's instances, and a chat
bound to nobody sees nothing at all.

The limits are kept in the database, not in memory, so a restart of the service does
not reset them: /link counts its own `login_link_requested` events, /restart looks at
the instance's last `restart_gateway` operation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.admin_actions import AdminActions
from core.clock import Clock, from_iso, to_iso
from core.ids import token_hash
from core.journal import record_event
from core.lifecycle import LifecycleError
from core.models import OperationKind, Status, telegram_actor
from db.connection import Database
from db.records import fetch_one

# The onboarding token as Telegram's /start carries it (DESIGN.md: [A-Za-z0-9_-], ≤ 64).
_START_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")

LINKS_PER_WINDOW = 3
LINK_WINDOW = timedelta(hours=1)
RESTART_INTERVAL = timedelta(minutes=10)
# Payment to a verified gateway, typically (create, boot, install, verify).
PROVISION_ESTIMATE = timedelta(minutes=5)


class BindOutcome(StrEnum):
    BOUND = "bound"  # this chat now belongs to the customer
    ALREADY = "already"  # the same chat tapped its link again: harmless
    USED = "used"  # another chat used this token: nothing is shown
    UNKNOWN = "unknown"  # no such token (or the payment has not reached us yet)


@dataclass(frozen=True)
class Binding:
    outcome: BindOutcome
    customer_id: str | None = None


@dataclass(frozen=True)
class CustomerInstance:
    """Only what the customer may see of their instance: no keys, hashes or logs."""

    id: str
    status: str
    plan: str
    server_ip: str | None
    created_at: datetime

    def control_ui(self, gateway_port: int) -> str | None:
        if self.status != Status.ACTIVE or not self.server_ip:
            return None
        host = f"[{self.server_ip}]" if ":" in self.server_ip else self.server_ip
        return f"http://{host}:{gateway_port}/"


class RestartOutcome(StrEnum):
    QUEUED = "queued"
    TOO_SOON = "too_soon"
    NOT_RUNNING = "not_running"
    NOT_FOUND = "not_found"  # not this customer's (whether or not it exists)


@dataclass(frozen=True)
class Restart:
    outcome: RestartOutcome
    wait: timedelta = timedelta(0)  # for TOO_SOON: until the next restart is allowed


class CustomerAccess:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        admin: AdminActions,
        *,
        links_per_window: int = LINKS_PER_WINDOW,
        link_window: timedelta = LINK_WINDOW,
        restart_interval: timedelta = RESTART_INTERVAL,
    ) -> None:
        self.db = db
        self.clock = clock
        self.admin = admin
        self.links_per_window = links_per_window
        self.link_window = link_window
        self.restart_interval = restart_interval

    async def bind_chat(self, token: str, chat_id: int, user_id: int) -> Binding:
        """Bind the chat to the customer whose unused onboarding token this is."""
        if not _START_TOKEN.fullmatch(token):
            return Binding(BindOutcome.UNKNOWN)
        hashed = token_hash(token)
        async with self.db.transaction() as conn:
            row = await fetch_one(
                conn,
                "SELECT id, onboarding_token_used_at, telegram_chat_id FROM customers "
                "WHERE onboarding_token_hash = ?",
                (hashed,),
            )
            if row is None:
                return Binding(BindOutcome.UNKNOWN)
            if row["onboarding_token_used_at"] is not None:
                if row["telegram_chat_id"] == chat_id:
                    return Binding(BindOutcome.ALREADY, str(row["id"]))
                return Binding(BindOutcome.USED)
            now = self.clock.now()
            await conn.execute(
                "UPDATE customers SET onboarding_token_used_at = ?, telegram_chat_id = ?, "
                "updated_at = ? WHERE id = ? AND onboarding_token_used_at IS NULL",
                (to_iso(now), chat_id, to_iso(now), row["id"]),
            )
            await record_event(
                conn,
                now,
                telegram_actor(user_id),
                "telegram_bound",
                customer_id=row["id"],
                payload={"chat_id": chat_id},
            )
        return Binding(BindOutcome.BOUND, str(row["id"]))

    async def customers_for_chat(self, chat_id: int) -> list[str]:
        """The customers this chat speaks for (one person may have bought twice)."""
        rows = await self.db.fetch_all(
            "SELECT id FROM customers WHERE telegram_chat_id = ? "
            "AND onboarding_token_used_at IS NOT NULL ORDER BY created_at, id",
            (chat_id,),
        )
        return [str(r["id"]) for r in rows]

    async def instances(self, customer_ids: list[str]) -> list[CustomerInstance]:
        """The customers' instances that still exist, oldest first."""
        rows = []
        for customer_id in customer_ids:  # one or two: a person who bought twice
            rows += await self.db.fetch_all(
                "SELECT id, status, plan, server_ip, created_at FROM instances "
                "WHERE customer_id = ? AND status != 'destroyed'",
                (customer_id,),
            )
        rows.sort(key=lambda r: (r["created_at"], r["id"]))
        return [
            CustomerInstance(
                r["id"], r["status"], r["plan"], r["server_ip"], from_iso(r["created_at"])
            )
            for r in rows
        ]

    def provisioning_eta(self, instance: CustomerInstance) -> timedelta:
        """About how long until a provisioning instance is ready (never below a minute)."""
        left = instance.created_at + PROVISION_ESTIMATE - self.clock.now()
        return max(left, timedelta(minutes=1))

    async def reserve_link(self, customer_id: str, user_id: int) -> timedelta | None:
        """Count a /link against the customer's limit. None: allowed (and recorded);
        otherwise how long until the next one is allowed."""
        async with self.db.transaction() as conn:
            now = self.clock.now()
            since = to_iso(now - self.link_window)
            cursor = await conn.execute(
                "SELECT created_at FROM events WHERE customer_id = ? "
                "AND event_type = 'login_link_requested' AND created_at > ? "
                "ORDER BY created_at",
                (customer_id, since),
            )
            recent = [from_iso(r["created_at"]) for r in await cursor.fetchall()]
            if len(recent) >= self.links_per_window:
                oldest = recent[-self.links_per_window]
                return max(oldest + self.link_window - now, timedelta(seconds=1))
            await record_event(
                conn, now, telegram_actor(user_id), "login_link_requested", customer_id=customer_id
            )
        return None

    async def restart(self, customer_ids: list[str], instance_id: str, user_id: int) -> Restart:
        """Queue restart_gateway for one of the customers' running instances, at most
        once per `restart_interval` per instance (whoever asked the last time)."""
        mine = {i.id: i for i in await self.instances(customer_ids)}
        instance = mine.get(instance_id)
        if instance is None:
            return Restart(RestartOutcome.NOT_FOUND)
        if instance.status != Status.ACTIVE:
            return Restart(RestartOutcome.NOT_RUNNING)
        now = self.clock.now()
        last = await self.db.fetch_one(
            "SELECT MAX(created_at) AS at FROM operations WHERE instance_id = ? AND kind = ?",
            (instance_id, OperationKind.RESTART_GATEWAY.value),
        )
        if last is not None and last["at"] is not None:
            allowed_at = from_iso(last["at"]) + self.restart_interval
            if allowed_at > now:
                return Restart(RestartOutcome.TOO_SOON, allowed_at - now)
        try:
            # Two presses at once: the second finds the first still pending and joins it.
            await self.admin.queue_operation(
                instance_id, OperationKind.RESTART_GATEWAY, telegram_actor(user_id)
            )
        except LifecycleError:
            return Restart(RestartOutcome.NOT_RUNNING)
        return Restart(RestartOutcome.QUEUED)
