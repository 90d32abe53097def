"""HTML for the ops group: everything from the database or a user is escaped, ids sit in
<code> so that a tap copies them, and nothing secret is ever part of a row we render."""

from __future__ import annotations

import html
from typing import Any

import aiosqlite

from core.models import Status
from core.redaction import redact
from core.resources import ResourceFigures

STATUS_EMOJI: dict[str, str] = {
    Status.PROVISIONING: "⏳",
    Status.ACTIVE: "🟢",
    Status.SUSPENDED: "⏸",
    Status.FAILED: "🔴",
    Status.DESTROYED: "⚫",
}
HEALTH_EMOJI: dict[str, str] = {"healthy": "💚", "unhealthy": "💔", "unknown": "❔"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=False)


def code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def status_badge(status: str) -> str:
    return f"{STATUS_EMOJI.get(status, '❓')} {esc(status)}"


def instance_line(row: aiosqlite.Row) -> str:
    """One /list line: emoji, copyable id, customer, plan."""
    email = row["customer_email"] or "(no email yet)"
    emoji = STATUS_EMOJI.get(row["status"], "❓")
    return f"{emoji} {code(row['id'])} {esc(email)} · {esc(row['plan'])}"


def instance_card(row: aiosqlite.Row) -> str:
    """The /status card. Only public facts: never the password hash, keys or tokens."""
    lines = [
        f"<b>{esc(row['id'])}</b> {status_badge(row['status'])}",
        f"Customer: {esc(row['customer_email'] or '(no email yet)')} {code(row['customer_id'])}",
        f"Plan: {esc(row['plan'])}",
    ]
    if row["subscription_id"]:
        lines.append(f"Subscription: {code(row['subscription_id'])}")
    if row["purchase_id"]:
        lines.append(f"Purchase: {code(row['purchase_id'])}")
    desired = esc(row["desired_state"])
    if row["desired_reason"]:
        desired += f" ({esc(row['desired_reason'])})"
    lines.append(f"Desired: {desired}")
    lines.append(_health_line(row))
    figures = ResourceFigures.from_json(row["resources"])
    if figures is not None:
        gateway = f"gateway {esc(figures.gateway_state)}"
        if figures.gateway_memory_mb is not None:
            gateway += f" {figures.gateway_memory_mb} MB"
        lines.append(
            f"Resources: disk {figures.disk_used_pct:.0f}% of {figures.disk_total_gb:.0f} GB · "
            f"memory {figures.memory_used_mb}/{figures.memory_total_mb} MB · {gateway} "
            f"({esc(row['resources_checked_at'])})"
        )
    if row["server_name"]:
        lines.append(f"Server: {code(row['server_name'])} {esc(row['location'] or '')}".rstrip())
    if row["server_ip"]:
        lines.append(f"IP: {code(row['server_ip'])}")
    if row["step"]:
        lines.append(f"Step: {esc(row['step'])} (attempt {esc(row['attempts'])})")
    if row["last_error"]:
        lines.append(f"Last error: {esc(redact(row['last_error']))}")
    if row["admin_hold"]:
        lines.append(
            f"Admin hold: {esc(row['admin_hold'])} by {esc(row['hold_actor'])}"
            f" ({esc(row['hold_reason'] or '')})"
        )
    if row["muted_until"]:
        lines.append(f"Muted until: {esc(row['muted_until'])}")
    lines.append(f"Created: {esc(row['created_at'])}")
    return "\n".join(lines)


def _health_line(row: aiosqlite.Row) -> str:
    """Health as the monitor last saw it: since when it is up, or how long it fails."""
    health = row["health_status"]
    line = f"Health: {HEALTH_EMOJI.get(health, '❔')} {esc(health)}"
    if health == "healthy" and row["healthy_since"]:
        line += f" since {esc(row['healthy_since'])}"
    elif row["consecutive_failures"]:
        line += f", {row['consecutive_failures']} failed checks since {esc(row['failing_since'])}"
    if row["last_health_check"]:
        line += f" (checked {esc(row['last_health_check'])})"
    return line


def usd(amount: float) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def eur(amount: float) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}€{abs(amount):,.2f}"
