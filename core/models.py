"""The domain's vocabulary: states, plans, operation kinds, actors."""

from __future__ import annotations

from enum import StrEnum


class DesiredState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DESTROYED = "destroyed"


class Status(StrEnum):
    """What an instance actually is, as the reconciler last left it."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    FAILED = "failed"
    DESTROYED = "destroyed"


class Plan(StrEnum):
    MONTHLY = "monthly"
    LIFETIME = "lifetime"
    MANUAL = "manual"  # comped by an admin through POST /api/provision


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"


class AdminHold(StrEnum):
    SUSPENDED = "suspended"  # holds until an admin resumes
    RESUMED = "resumed"  # holds until the next billing event or deadline


class OperationKind(StrEnum):
    RESTART_GATEWAY = "restart_gateway"
    REBOOT = "reboot"
    REPROVISION = "reprovision"
    RETRY = "retry"
    SNAPSHOT = "snapshot"
    UPGRADE = "upgrade"


class OperationState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


# Actors recorded in `events.actor`; admins on Telegram are `tg:<user id>`.
ACTOR_PADDLE = "paddle"
ACTOR_API = "api"
ACTOR_MONITOR = "monitor"
ACTOR_POLICY = "policy"


def telegram_actor(user_id: int) -> str:
    return f"tg:{user_id}"
