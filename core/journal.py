"""The two records every change leaves: an `events` row (who did what) and, when a
person must hear of it, a `notifications` row that `bot/`'s sender delivers.

Both are written inside the caller's transaction, so a change and its record and
its alert commit together or not at all. Nothing secret is ever written here.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aiosqlite

from core.clock import to_iso
from db.records import insert

OPS = "ops"
CUSTOMER = "customer"


async def record_event(
    conn: aiosqlite.Connection,
    now: datetime,
    actor: str,
    event_type: str,
    *,
    instance_id: str | None = None,
    customer_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    await insert(
        conn,
        "events",
        {
            "instance_id": instance_id,
            "customer_id": customer_id,
            "event_type": event_type,
            "payload": json.dumps(payload, sort_keys=True) if payload is not None else None,
            "actor": actor,
            "created_at": to_iso(now),
        },
    )


async def notify_ops(
    conn: aiosqlite.Connection,
    now: datetime,
    kind: str,
    body: str,
    *,
    instance_id: str | None = None,
    customer_id: str | None = None,
) -> None:
    """Queue a message for the operators' group (plain text; the sender escapes it)."""
    await _notify(conn, now, OPS, kind, body=body, instance_id=instance_id, customer_id=customer_id)


async def notify_customer(
    conn: aiosqlite.Connection,
    now: datetime,
    customer_id: str,
    kind: str,
    *,
    instance_id: str | None = None,
    ref: dict[str, Any] | None = None,
) -> None:
    """Queue a message for a customer, rendered at send time from `kind` and `ref`."""
    await _notify(
        conn, now, CUSTOMER, kind, instance_id=instance_id, customer_id=customer_id, ref=ref or {}
    )


async def _notify(
    conn: aiosqlite.Connection,
    now: datetime,
    recipient: str,
    kind: str,
    *,
    body: str | None = None,
    ref: dict[str, Any] | None = None,
    instance_id: str | None = None,
    customer_id: str | None = None,
) -> None:
    await insert(
        conn,
        "notifications",
        {
            "recipient": recipient,
            "customer_id": customer_id,
            "instance_id": instance_id,
            "kind": kind,
            "body": body,
            "ref": json.dumps(ref, sort_keys=True) if ref is not None else None,
            "next_attempt_at": to_iso(now),
            "created_at": to_iso(now),
        },
    )
