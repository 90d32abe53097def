"""The outbox sender against the Telegram simulator and a real SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.ops_chat import ops_chat_id, set_ops_chat_id
from bot.outbox import PROBE_EVERY
from bot.outbox_store import BACKOFF_CAP_S
from core.clock import FakeClock, from_iso
from core.settings import Settings, secret_values
from db.connection import Database
from tests.bot.outbox_world import ALERT_EMAIL, CONTROL_UI, World, make_world


@pytest.fixture
async def world(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> AsyncIterator[World]:
    async with make_world(db, clock, make_settings) as built:
        yield built


def send_calls(world: World, error_code: int | None = None) -> int:
    return sum(
        1
        for call in world.sim.calls
        if call.method == "sendMessage" and (error_code is None or call.error_code == error_code)
    )


def digest_count(text: str) -> int:
    """How many alerts a message in the ops chat stands for."""
    found = re.match(r"🚨 (\d+) alerts", text)
    return int(found.group(1)) if found else 1


async def test_an_alert_arrives_escaped_with_its_emoji(world: World) -> None:
    await world.alert("instance_failed", "inst_a1 failed at <install>: exit 1 & more")
    assert await world.outbox.send_due() == 1
    [message] = world.sim.bot_messages(world.ops.id)
    assert message.text == "❌ inst_a1 failed at <install>: exit 1 & more"
    assert message.parse_mode == "HTML" and "&lt;install&gt;" in (message.source_text or "")
    [row] = await world.rows()
    assert row["status"] == "sent" and row["attempts"] == 1 and row["sent_at"]
    assert await world.outbox.next_due_in() is None


async def test_429_waits_for_retry_after(world: World) -> None:
    world.sim.fail_next(
        "sendMessage", 1, error_code=429, description="Too Many Requests: retry after 7",
        retry_after=7,
    )  # fmt: skip
    await world.alert("instance_waiting", "inst_b1 waits at create_server")
    assert await world.outbox.send_due() == 0
    [row] = await world.rows("pending")
    assert "429" in row["last_error"]
    assert from_iso(row["next_attempt_at"]) == world.clock.now() + timedelta(seconds=7)
    assert await world.outbox.next_due_in() == 7

    world.clock.advance(timedelta(seconds=6))
    assert await world.outbox.send_due() == 0
    assert send_calls(world) == 1  # nothing tried before Telegram's time
    world.clock.advance(timedelta(seconds=1))
    assert await world.outbox.send_due() == 1
    assert world.ops_texts() == ["⏳ inst_b1 waits at create_server"]


async def test_a_migrated_ops_group_gets_the_alert_and_keeps_its_new_id(world: World) -> None:
    owner = world.sim.add_user("Bo")
    group = world.sim.add_group("Ops (old)", owner=owner, supergroup=False)
    await set_ops_chat_id(world.db, group.id)
    new_id = world.sim.migrate_group(group.id)

    await world.alert("past_due", "subscription sub_1 is past due")
    assert await world.outbox.send_due() == 1
    assert world.ops_texts(new_id) == ["💳 subscription sub_1 is past due"]
    assert await ops_chat_id(world.db, world.ctx.settings) == new_id

    world.clock.advance(timedelta(seconds=2))
    await world.alert("past_due", "subscription sub_2 is past due")
    assert await world.outbox.send_due() == 1
    assert len(world.ops_texts(new_id)) == 2
    assert send_calls(world, error_code=400) == 1  # the old id was tried once only


async def test_a_kicked_bot_stops_and_alerts_go_to_alert_email(world: World) -> None:
    world.sim.kick_bot(world.ops.id)
    await world.alert("instance_failed", "inst_c1 failed at verify: timeout")
    assert await world.outbox.send_due() == 1
    [mail] = world.mailbox.to(ALERT_EMAIL)
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "inst_c1 failed at verify: timeout" in text
    assert "bot was kicked" in text and "cannot post in the ops group" in text
    [row] = await world.rows("sent")
    assert row["last_error"] == "by email: ops chat unreachable"

    calls = send_calls(world)
    world.clock.advance(timedelta(seconds=30))
    await world.alert("operation_failed", "inst_c1: restart_gateway failed")
    assert await world.outbox.send_due() == 1
    assert send_calls(world) == calls  # Telegram is not asked again for a while
    assert len(world.mailbox.to(ALERT_EMAIL)) == 2

    world.sim.restore_bot(world.ops.id)
    world.clock.advance(PROBE_EVERY)
    await world.alert("instance_active", "inst_c1: suspended → active")
    assert await world.outbox.send_due() == 1
    assert world.ops_texts() == ["✅ inst_c1: suspended → active"]  # back in the group
    assert len(world.mailbox.to(ALERT_EMAIL)) == 2


async def test_kicked_without_smtp_alerts_wait_and_are_not_lost(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    async with make_world(db, clock, make_settings, smtp_url="") as world:
        assert world.outbox.email is None
        world.sim.kick_bot(world.ops.id)
        caplog.set_level(logging.ERROR, logger="bot.outbox")
        await world.alert("instance_failed", "inst_d1 failed")
        await world.drain(until=clock.now() + timedelta(hours=1))
        [row] = await world.rows("pending")
        assert row["attempts"] > 3 and "no email" in row["last_error"]
        assert sum("no SMTP_URL/ALERT_EMAIL" in r.message for r in caplog.records) == 1
        world.sim.restore_bot(world.ops.id)
        await world.drain()
        assert world.ops_texts() == ["❌ inst_d1 failed"]


async def test_telegram_down_for_an_hour_then_everything_in_order(world: World) -> None:
    bea = world.sim.add_user("Bea")
    customer_id, instance_id = await world.customer("bea@example.test", user=bea)
    port = int(world.sim.url.rsplit(":", 1)[1])
    await world.sim.stop()
    already_sent = len(await world.rows("sent"))  # the instance's "requested" alert
    start = world.clock.now()
    expected_alerts = []
    for minute in range(0, 60, 5):  # an alert and a customer message every five minutes
        body = f"inst_{minute:02d}: unhealthy at minute {minute}"
        expected_alerts.append(body)
        await world.alert("instance_unhealthy", body)
        await world.tell(customer_id, "instance_suspended", instance_id, {"reason": f"#{minute}"})
        await world.drain(until=start + timedelta(minutes=minute + 5))
    assert len(await world.rows("sent")) == already_sent and await world.rows("failed") == []
    pending = await world.rows("pending")
    assert len(pending) == 24
    assert max(row["attempts"] for row in pending) > 5
    for row in pending:  # capped backoff: each row is tried again within five minutes
        due = from_iso(row["next_attempt_at"]) - world.clock.now()
        assert due <= timedelta(seconds=BACKOFF_CAP_S)

    await world.sim.start(port=port)
    await world.drain()
    assert await world.rows("pending") == []
    ops_text = "\n".join(world.ops_texts())
    assert sum(digest_count(t) for t in world.ops_texts()) == 12
    assert len(world.ops_texts()) < 12  # they waited together: folded
    positions = [ops_text.index(body) for body in expected_alerts]
    assert positions == sorted(positions)
    private = [m.text or "" for m in world.sim.bot_messages(bea.id)]
    assert [re.search(r"#(\d+)", t).group(1) for t in private] == [  # type: ignore[union-attr]
        str(minute) for minute in range(0, 60, 5)
    ]


async def test_5xx_is_retried_with_growing_backoff(world: World) -> None:
    world.sim.fail_next("sendMessage", 4, error_code=502, description="Bad Gateway")
    await world.alert("instance_failed", "inst_e1 failed")
    delays = []
    for _ in range(4):
        assert await world.outbox.send_due() == 0
        due_in = await world.outbox.next_due_in()
        assert due_in is not None
        delays.append(due_in)
        world.clock.advance(timedelta(seconds=due_in))
    assert delays == [5, 10, 20, 40]
    assert await world.outbox.send_due() == 1
    [row] = await world.rows("sent")
    assert row["attempts"] == 5


async def test_a_burst_of_200_alerts_is_digested_within_the_group_limit(world: World) -> None:
    for n in range(200):  # one every half second: the first go alone, the rest fold
        await world.alert("instance_unhealthy", f"inst_{n:03d} unhealthy: /healthz timed out")
        await world.outbox.send_due()
        world.clock.advance(timedelta(milliseconds=500))
    await world.drain()
    assert await world.rows("pending") == []
    texts = world.ops_texts()
    assert sum(digest_count(t) for t in texts) == 200  # each alert counted exactly once
    assert len(texts) <= 10  # a storm reads as a few digests, not a scroll of alerts
    assert any("instances unhealthy" in t for t in texts)
    assert send_calls(world, error_code=429) == 0
    ops_sends = [at for chat, at in world.sends if chat == world.ops.id]
    for index, at in enumerate(ops_sends):
        in_minute = [t for t in ops_sends[index:] if t - at < timedelta(seconds=60)]
        assert len(in_minute) <= 20


async def test_a_5000_character_alert_is_split(world: World) -> None:
    body = "\n".join(f"line {n:03d}: R&D <log> output " + "x" * 40 for n in range(80))
    assert len(body) > 5000
    await world.alert("operation_failed", body)
    await world.drain()
    texts = world.ops_texts()
    assert len(texts) == 2 and all(len(t) <= 4096 for t in texts)
    assert "\n".join(texts) == f"⚠️ {body}"
    [row] = await world.rows("sent")
    assert row["attempts"] == 1


async def test_customer_messages_go_to_the_bound_chat_in_order(world: World) -> None:
    bea = world.sim.add_user("Bea")
    customer_id, instance_id = await world.customer("bea@example.test", user=bea)
    await world.setup(customer_id, instance_id)
    await world.tell(customer_id, "past_due", instance_id, {"days": "7"})
    await world.tell(customer_id, "instance_suspended", instance_id, {"reason": "unpaid"})
    await world.drain()
    texts = [m.text or "" for m in world.sim.bot_messages(bea.id)]
    assert len(texts) == 3
    assert texts[0].startswith("🚀 Your OpenClaw gateway is ready")
    assert "suspended in 7 days" in texts[1] and "(unpaid)" in texts[2]
    assert CONTROL_UI in texts[0]
    link = re.search(r"https://openclaw\.test/login/([A-Za-z0-9_-]+)", texts[0])
    assert link is not None
    grant = await world.ctx.login_tokens.check(link.group(1))
    assert grant.instance_id == instance_id and grant.customer_id == customer_id
    assert "t.me/" not in texts[0] and "never-in-a-message" not in texts[0]
    assert world.mailbox.messages == []
    times = [at for chat, at in world.sends if chat == bea.id]
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(times))


async def test_a_customer_who_blocked_the_bot_gets_email(world: World) -> None:
    bea = world.sim.add_user("Bea")
    customer_id, instance_id = await world.customer("bea@example.test", user=bea)
    world.sim.block_bot(bea)
    await world.setup(customer_id, instance_id)
    assert await world.outbox.send_due() == 1
    [mail] = world.mailbox.to("bea@example.test")
    plain = mail.get_body(("plain",))
    assert plain is not None
    assert "https://t.me/openclaw_hosted_bot?start=" in plain.get_content()
    customer = await world.db.fetch_one("SELECT * FROM customers WHERE id = ?", (customer_id,))
    assert customer is not None and customer["telegram_chat_id"] is None
    events = await world.db.fetch_all(
        "SELECT * FROM events WHERE event_type = 'telegram_chat_lost'"
    )
    assert len(events) == 1


async def test_a_customer_with_neither_chat_nor_email_waits(world: World) -> None:
    customer_id, instance_id = await world.customer("")
    await world.setup(customer_id, instance_id)
    await world.drain(until=world.clock.now() + timedelta(minutes=30))
    [row] = await world.rows("pending")
    assert "no email yet" in row["last_error"]
    async with world.db.transaction() as conn:  # Paddle's API answers with the address
        await conn.execute(
            "UPDATE customers SET email = 'late@example.test' WHERE id = ?", (customer_id,)
        )
    await world.drain()
    assert len(world.mailbox.to("late@example.test")) == 1


async def test_no_secret_reaches_the_ops_chat_or_alert_email(world: World) -> None:
    settings = world.ctx.settings
    secrets = secret_values(settings)
    assert settings.telegram_bot_token.get_secret_value() in secrets
    assert settings.admin_api_key.get_secret_value() in secrets
    leaky = [  # error texts that quoted a secret, as a careless library might
        f"POST https://api.telegram.org/bot{settings.telegram_bot_token.get_secret_value()}/x",
        f"admin key {settings.admin_api_key.get_secret_value()} rejected",
        f"Paddle said 401 for {settings.paddle_api_key.get_secret_value()}",
        f"hcloud token {settings.hcloud_token.get_secret_value()} invalid",
        f"signature with {settings.paddle_webhook_secrets[1].get_secret_value()} failed",
    ]
    for text in leaky:
        await world.alert("operation_failed", text)
    await world.drain()
    world.sim.kick_bot(world.ops.id)
    for text in leaky[:2]:
        await world.alert("operation_failed", text)
    await world.drain()
    said = [m.source_text or "" for m in world.sim.bot_messages(world.ops.id)]
    said += [m.as_string() for m in world.mailbox.to(ALERT_EMAIL)]
    assert said and any("[redacted]" in text for text in said)
    for text in said:
        for secret in secrets:
            assert secret not in text


async def test_run_delivers_on_wake_and_stops_when_cancelled(world: World) -> None:
    task = asyncio.create_task(world.outbox.run())
    try:
        await world.alert("instance_requested", "inst_f1: provisioning requested by api")
        world.outbox.wake()
        message = await world.sim.next_bot_message(world.ops.id)
        assert message.text == "🆕 inst_f1: provisioning requested by api"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
