"""Rendering: ops alerts, digests, customer messages, and splitting for Telegram."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Callable

import pytest

from bot.channels.telegram import MAX_MESSAGE, split_html
from bot.messages import (
    DIGEST_LINES,
    Alert,
    Links,
    customer_message,
    mint_onboarding_link,
    render_digest,
    render_ops,
)
from core.clock import FakeClock
from core.redaction import redact
from core.settings import Settings
from db.connection import Database
from tests.bot.outbox_world import World, make_world


@pytest.fixture
async def world(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> AsyncIterator[World]:
    async with make_world(db, clock, make_settings) as built:
        yield built


def test_an_alert_is_escaped_and_has_its_kinds_emoji() -> None:
    rendered = render_ops(Alert("instance_failed", "inst_x failed: <b>&</b>", "inst_x"))
    assert rendered.telegram == "❌ inst_x failed: &lt;b&gt;&amp;&lt;/b&gt;"
    assert rendered.text == "inst_x failed: <b>&</b>"
    assert "&lt;b&gt;" in rendered.html and rendered.subject.endswith("inst_x failed: <b>&</b>")
    assert render_ops(Alert("something_new", "hello", None)).telegram == "🔔 hello"


def test_a_digest_counts_each_alert_by_kind_in_order() -> None:
    alerts = [Alert("instance_unhealthy", f"inst_{n:03d} unhealthy <x>", f"inst_{n:03d}")
              for n in range(40)]  # fmt: skip
    alerts.insert(3, Alert("past_due", "subscription sub_1 is past due", None))
    rendered = render_digest(alerts)
    lines = rendered.telegram.splitlines()
    assert lines[0] == "🚨 <b>41 alerts</b>"
    assert "🩺 <b>40 instances unhealthy</b>:" in lines
    assert rendered.telegram.index("instances unhealthy") < rendered.telegram.index("past due")
    assert "<code>inst_039</code>" in rendered.telegram  # a big kind lists every id
    assert "&lt;x&gt;" in rendered.telegram and "<x>" not in rendered.telegram
    assert f"… {40 - DIGEST_LINES} more like these" in rendered.telegram
    assert "1 instances" not in rendered.text and "past due" in rendered.text
    assert rendered.subject.endswith("41 alerts")


def test_split_keeps_lines_and_never_cuts_an_entity() -> None:
    assert split_html("short") == ["short"]
    lines = [f"line {n}" + "y" * 50 for n in range(200)]
    pieces = split_html("\n".join(lines))
    assert all(len(p) <= MAX_MESSAGE for p in pieces) and "\n".join(pieces) == "\n".join(lines)
    long_line = html.escape("R&D <" * 2000)
    pieces = split_html(long_line)
    assert all(len(p) <= MAX_MESSAGE for p in pieces) and "".join(pieces) == long_line
    for piece in pieces:  # each piece is valid on its own: no entity cut in two
        assert html.unescape(piece).count("&") == piece.count("&amp;")


def test_redact_removes_each_secret() -> None:
    assert redact("a SECRET1 b SECRET2", ["SECRET1", "SECRET2", ""]) == "a [redacted] b [redacted]"


def test_customer_messages_by_kind() -> None:
    past_due = customer_message("past_due", {"days": "7"}, "inst_a", Links(), by_email=False)
    assert "suspended in 7 days" in past_due.telegram and past_due.telegram.startswith("💳")
    suspended = customer_message(
        "instance_suspended", {"reason": "<unpaid>"}, "inst_a", Links(), by_email=True
    )
    assert "(&lt;unpaid&gt;)" in suspended.telegram and "(<unpaid>)" in suspended.text
    assert "&lt;unpaid&gt;" in suspended.html
    active = customer_message("instance_active", {}, "inst_a", Links(), by_email=False)
    assert "inst_a is running again" in active.text
    other = customer_message("snapshot_ready", {}, "inst_a", Links(), by_email=False)
    assert "snapshot ready" in other.text


def test_the_setup_message_says_what_to_do_and_holds_no_password() -> None:
    links = Links(login="https://openclaw.test/login/tok", login_days=7)
    telegram = customer_message(
        "setup", {"control_ui": "http://203.0.113.7:18789/"}, "inst_a", links, by_email=False
    )
    assert "Control UI: http://203.0.113.7:18789/" in telegram.telegram
    assert "https://openclaw.test/login/tok" in telegram.telegram
    assert "valid for 7 days, works once" in telegram.telegram
    assert "/link in this chat" in telegram.telegram and "t.me" not in telegram.telegram
    by_email = customer_message(
        "setup", {"control_ui": "http://203.0.113.7:18789/"}, "inst_a",
        Links(login="https://openclaw.test/login/tok", telegram="https://t.me/b?start=x"),
        by_email=True,
    )  # fmt: skip
    assert "https://t.me/b?start=x" in by_email.text and 'href="https://t.me/b?start=x"' in (
        by_email.html
    )
    assert by_email.html.startswith("<!doctype html>")


async def test_an_onboarding_token_is_minted_only_for_an_unbound_customer(world: World) -> None:
    unbound, _ = await world.customer("ann@example.test")
    link = await mint_onboarding_link(world.ctx, unbound)
    assert link is not None and link.startswith("https://t.me/openclaw_hosted_bot?start=")
    bea = world.sim.add_user("Bea")
    bound, _ = await world.customer("bea@example.test", user=bea)
    before = await world.db.fetch_one(
        "SELECT onboarding_token_hash FROM customers WHERE id = ?", (bound,)
    )
    assert await mint_onboarding_link(world.ctx, bound) is None
    after = await world.db.fetch_one(
        "SELECT onboarding_token_hash FROM customers WHERE id = ?", (bound,)
    )
    assert before is not None and after is not None
    assert before["onboarding_token_hash"] == after["onboarding_token_hash"]
