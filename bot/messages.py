"""What the outbox says: a `notifications` row rendered into text for each channel.

Ops alerts are plain text from `core/` (escaped here, an emoji by kind); a burst of them
becomes one digest. Customer messages are rendered from `kind` and `ref` at send time,
so the setup message carries a login link minted at that moment (and, by email, a
Telegram deep link with a fresh onboarding token). Nothing secret is ever rendered: the
gateway password is shown only by the login page, read from the server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from typing import Any

import aiosqlite

from bot.context import BotContext
from core.clock import to_iso
from core.ids import new_token, token_hash

PRODUCT = "OpenClaw Hosted"

# kind → (emoji, what a count of them is called in a digest)
OPS_KINDS: dict[str, tuple[str, str]] = {
    "instance_failed": ("❌", "instances failed"),
    "instance_unhealthy": ("🩺", "instances unhealthy"),
    "instance_flapping": ("🔁", "instances flapping"),
    "instance_recovered": ("💚", "instances recovered"),
    "disk_high": ("💽", "disks nearly full"),
    "disk_ok": ("💽", "disks back to normal"),
    "gateway_memory_high": ("🧠", "gateways using too much memory"),
    "gateway_memory_ok": ("🧠", "gateways back to normal memory"),
    "server_state": ("🖥️", "servers in an unexpected state"),
    "server_state_ok": ("🖥️", "servers back to normal"),
    "server_orphan": ("👻", "servers that belong to no instance"),
    "backup_failed": ("💾", "database backups failed"),
    "server_price": ("🏷️", "Hetzner price changes"),
    "instance_waiting": ("⏳", "instances waiting"),
    "instance_requested": ("🆕", "instances requested"),
    "instance_active": ("✅", "instances active"),
    "instance_suspended": ("⏸️", "instances suspended"),
    "instance_destroyed": ("🗑️", "instances destroyed"),
    "operation_failed": ("⚠️", "operations failed"),
    "rollout_started": ("🚀", "rollouts started"),
    "rollout_progress": ("🐤", "rollout canaries passed"),
    "rollout_halted": ("🛑", "rollouts halted"),
    "rollout_done": ("🏁", "rollouts done"),
    "rollout_changed": ("⏯️", "rollouts paused, resumed or aborted"),
    "past_due": ("💳", "subscriptions past due"),
    "lifetime_cap": ("🎟️", "lifetime purchases over the cap"),
    "unknown_price": ("❓", "payments with an unknown price"),
    "partial_refund": ("💸", "partial refunds"),
    "paid_after_admin_destroy": ("💰", "payments after an admin destroy"),
    "customer_unreachable": ("📭", "customers unreachable"),
}
_DEFAULT_KIND = ("🔔", "alerts")
DIGEST_LINES = 25  # alerts quoted (one line each) per kind in a digest
DIGEST_IDS = 60  # beyond that, the kind's instance ids are listed instead
LINE_CHARS = 200


@dataclass(frozen=True)
class Rendered:
    """One message in every form a channel needs."""

    subject: str  # email subject
    telegram: str  # Telegram HTML
    text: str  # email plain text
    html: str  # email HTML


@dataclass(frozen=True)
class Alert:
    kind: str
    body: str
    instance_id: str | None


def ops_style(kind: str) -> tuple[str, str]:
    return OPS_KINDS.get(kind, _DEFAULT_KIND)


def render_ops(alert: Alert) -> Rendered:
    emoji, _ = ops_style(alert.kind)
    first_line = alert.body.splitlines()[0] if alert.body else alert.kind
    return Rendered(
        subject=f"[{PRODUCT}] {first_line[:120]}",
        telegram=f"{emoji} {escape(alert.body)}",
        text=alert.body,
        html=_html_email(f"<p>{emoji} {_lines_html(alert.body)}</p>"),
    )


def render_digest(alerts: Sequence[Alert]) -> Rendered:
    """Many alerts as one message: per kind a count and each alert on one line (a big
    kind lists its instance ids and its first alerts).

    Kinds are listed in the order their first alert came; nothing inside is secret, and
    every alert is counted, so the digest stands for each of them.
    """
    by_kind: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_kind.setdefault(alert.kind, []).append(alert)
    heading = f"{len(alerts)} alerts"
    tg = [f"🚨 <b>{heading}</b>"]
    plain = [heading]
    for kind, group in by_kind.items():
        emoji, label = ops_style(kind)
        summary = f"{len(group)} {label}" if len(group) > 1 else kind.replace("_", " ")
        ids = list(dict.fromkeys(a.instance_id for a in group if a.instance_id))
        shown = ids[:DIGEST_IDS] if len(group) > DIGEST_LINES else []
        more = f" … and {len(ids) - len(shown)} more" if len(ids) > len(shown) else ""
        tg.append("")
        tg.append(f"{emoji} <b>{escape(summary)}</b>" + (":" if shown else ""))
        plain.append("")
        plain.append(f"{summary}" + (f": {', '.join(shown)}{more}" if shown else ""))
        if shown:
            tg.append(", ".join(f"<code>{escape(i)}</code>" for i in shown) + escape(more))
        for alert in group[:DIGEST_LINES]:
            line = _clip(alert.body)
            tg.append(f"• {escape(line)}")
            plain.append(f"  - {line}")
        if len(group) > DIGEST_LINES:
            tg.append(f"• … {len(group) - DIGEST_LINES} more like these")
            plain.append(f"  - … {len(group) - DIGEST_LINES} more like these")
    text = "\n".join(plain)
    return Rendered(
        subject=f"[{PRODUCT}] {heading}",
        telegram="\n".join(tg),
        text=text,
        html=_html_email(f"<pre>{escape(text)}</pre>"),
    )


def _clip(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= LINE_CHARS else flat[: LINE_CHARS - 1] + "…"


def _lines_html(text: str) -> str:
    return "<br>\n".join(escape(line) for line in text.splitlines())


def _html_email(body: str) -> str:
    return (
        '<!doctype html><html><body style="font-family: sans-serif; line-height: 1.5">\n'
        f"{body}\n</body></html>"
    )


# -- customer messages -------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    login: str | None = None  # PUBLIC_BASE_URL/login/<token>
    login_days: int = 7
    telegram: str | None = None  # t.me/<bot>?start=<onboarding token>, email only


async def render_customer(
    ctx: BotContext, row: aiosqlite.Row, customer: aiosqlite.Row, *, by_email: bool
) -> Rendered:
    """Render a customer notification; a setup message mints its links now."""
    ref: dict[str, Any] = json.loads(row["ref"] or "{}")
    links = Links()
    if row["kind"] == "setup":
        token = await ctx.login_tokens.mint(row["instance_id"])
        deep = None
        if by_email and customer["telegram_chat_id"] is None:
            deep = await mint_onboarding_link(ctx, customer["id"])
        links = Links(
            login=f"{ctx.settings.public_base_url}/login/{token}",
            login_days=max(1, round(ctx.login_tokens.ttl / timedelta(days=1))),
            telegram=deep,
        )
    return customer_message(row["kind"], ref, row["instance_id"], links, by_email=by_email)


async def mint_onboarding_link(ctx: BotContext, customer_id: str) -> str | None:
    """A fresh `t.me/<bot>?start=<token>` for a customer whose chat is not bound yet.

    Only the token's hash is stored, so each email needs a new token; it replaces the
    previous one (single-use again), and nothing changes once a chat is bound.
    """
    if not ctx.bot_username:
        return None
    token = new_token()
    async with ctx.core.db.transaction() as conn:
        cursor = await conn.execute(
            "UPDATE customers SET onboarding_token_hash = ?, onboarding_token_used_at = NULL, "
            "updated_at = ? WHERE id = ? AND telegram_chat_id IS NULL",
            (token_hash(token), to_iso(ctx.core.clock.now()), customer_id),
        )
        if cursor.rowcount == 0:
            return None
    return f"https://t.me/{ctx.bot_username}?start={token}"


def customer_message(
    kind: str, ref: dict[str, Any], instance_id: str | None, links: Links, *, by_email: bool
) -> Rendered:
    """The words of each customer message as (subject, paragraphs); links stay separate."""
    instance = instance_id or "your instance"
    if kind == "setup":
        return _setup(str(ref.get("control_ui", "")), links, by_email=by_email)
    if kind == "past_due":
        days = ref.get("days", "a few")
        return _simple(
            "Your payment did not go through",
            "💳",
            [
                "Your latest payment for OpenClaw Hosted did not go through.",
                f"Your gateway keeps running; it will be suspended in {days} days unless the "
                "payment is made. Paddle has emailed you a link to update your payment method.",
            ],
        )
    if kind == "instance_suspended":
        reason = ref.get("reason", "")
        return _simple(
            "Your OpenClaw gateway is suspended",
            "⏸️",
            [
                f"Your OpenClaw gateway {instance} is suspended"
                + (f" ({reason})." if reason else "."),
                "Your data is kept. It starts again as soon as the reason is resolved; reply "
                "to this message if you think this is a mistake.",
            ],
        )
    if kind == "suspension_warning":
        at, reason = str(ref.get("at", "")), ref.get("reason", "")
        when = at[:16].replace("T", " ") + " UTC" if at else "soon"
        return _simple(
            "Your OpenClaw gateway will be suspended soon",
            "⏳",
            [
                f"Your OpenClaw gateway {instance} will be suspended at {when}"
                + (f" ({reason})." if reason else "."),
                "Nothing is deleted: your data is kept, and the gateway keeps running if the "
                "payment is made (or the subscription renewed) before then.",
            ],
        )
    if kind == "instance_active":
        return _simple(
            "Your OpenClaw gateway is running again",
            "✅",
            [f"Your OpenClaw gateway {instance} is running again."],
        )
    return _simple(
        "News about your OpenClaw gateway",
        "🔔",
        [f"There is news about your OpenClaw gateway {instance} ({kind.replace('_', ' ')})."],
    )


def _simple(subject: str, emoji: str, paragraphs: list[str]) -> Rendered:
    return Rendered(
        subject=f"{PRODUCT}: {subject}",
        telegram=f"{emoji} <b>{escape(subject)}</b>\n\n"
        + "\n\n".join(escape(p) for p in paragraphs),
        text="\n\n".join(paragraphs) + f"\n\n— {PRODUCT}\n",
        html=_html_email("\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)),
    )


def _setup(control_ui: str, links: Links, *, by_email: bool) -> Rendered:
    subject = "Your OpenClaw gateway is ready"
    login = links.login or ""
    validity = f"valid for {links.login_days} days, works once"
    steps = [
        "Open the login link and press the button. You get a one-time link that opens the "
        "Control UI already paired with your browser, and your gateway password for apps "
        "and the CLI.",
        "Bookmark the Control UI address: it stays the same.",
        "Logging in from another browser later? Ask for a fresh login link with /link in "
        + ("our Telegram chat." if by_email else "this chat."),
    ]
    tg = [
        f"🚀 <b>{subject}</b>",
        "",
        f"Control UI: {escape(control_ui)}",
        f"Your login link ({validity}):",
        escape(login),
        "",
        "<b>What to do next</b>",
        *(f"{n}. {escape(step)}" for n, step in enumerate(steps, 1)),
    ]
    text = [
        f"{subject}.",
        "",
        f"Control UI: {control_ui}",
        f"Your login link ({validity}):",
        login,
        "",
        "What to do next:",
        *(f"{n}. {step}" for n, step in enumerate(steps, 1)),
    ]
    html = [
        f"<h2>{subject}</h2>",
        f'<p>Control UI: <a href="{escape(control_ui)}">{escape(control_ui)}</a></p>',
        f'<p><a href="{escape(login)}"><b>Open your login page</b></a> ({validity})<br>'
        f"{escape(login)}</p>",
        "<p><b>What to do next</b></p>",
        "<ol>" + "".join(f"<li>{escape(step)}</li>" for step in steps) + "</ol>",
    ]
    if links.telegram:
        invite = "Get your alerts and new login links in Telegram, with one tap:"
        text += ["", invite, links.telegram]
        html.append(
            f'<p>{escape(invite)} <a href="{escape(links.telegram)}">'
            f"{escape(links.telegram)}</a></p>"
        )
    return Rendered(
        subject=f"{PRODUCT}: {subject}",
        telegram="\n".join(tg),
        text="\n".join(text) + f"\n\n— {PRODUCT}\n",
        html=_html_email("\n".join(html)),
    )
