"""/logs, /mute, /stats, /help."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from core.clock import to_iso
from tests.bot.conftest import ADMIN, World

pytestmark = pytest.mark.usefixtures("no_task_left_behind")


async def set_columns(world: World, instance_id: str, **values: object) -> None:
    assignments = ", ".join(f"{column} = ?" for column in values)
    async with world.db.transaction() as conn:
        await conn.execute(
            f"UPDATE instances SET {assignments} WHERE id = ?",  # noqa: S608
            (*values.values(), instance_id),
        )


async def test_logs_inline_as_a_document_and_never_a_secret(world: World) -> None:
    instance = await world.provision("a@example.com")
    empty = await world.ask("logs", instance)
    assert empty.text == f"The provision log of {instance} is empty."

    await set_columns(world, instance, provision_log="step 1 <ok>\nexport PASSWORD=hunter2\n")
    short = await world.ask("logs", instance)
    assert "step 1 <ok>" in (short.text or "") and "<pre>" in (short.source_text or "")
    assert "hunter2" not in (short.text or "") and "PASSWORD=[redacted]" in (short.text or "")

    lines = [f"line {n}: installing package {n}" for n in range(400)]
    lines[10] = "gateway token: abcdef0123456789"
    await set_columns(world, instance, provision_log="\n".join(lines))
    world.sim.send_command(world.ops.id, world.admin, "logs", instance)
    document = await world.sim.next_bot_message(world.ops.id)
    assert document.document is not None
    assert document.document.file_name == f"{instance}-provision.log"
    content = document.document.content.decode()
    assert "line 0:" in content and "line 399:" in content
    assert "abcdef0123456789" not in content and "token: [redacted]" in content
    tail = await world.sim.next_bot_message(world.ops.id)
    assert "line 399:" in (tail.text or "") and "line 300:" not in (tail.text or "")


async def test_logs_bad_arguments_unknown_id_and_the_card_button(world: World) -> None:
    assert ((await world.ask("logs")).text or "").startswith("Usage: /logs")
    assert (await world.ask("logs", "inst_nope00000000")).text == "No instance inst_nope00000000."
    instance = await world.provision("a@example.com")
    await set_columns(world, instance, provision_log="booted\n")
    card = await world.ask("status", instance)
    await world.press(card, f"ca:logs:{instance}")
    logs = await world.sim.next_bot_message(world.ops.id)
    assert "booted" in (logs.text or "")


async def test_mute_and_unmute(world: World) -> None:
    instance = await world.provision("a@example.com")
    reply = await world.ask("mute", f"{instance} 2h")
    until = to_iso(world.clock.now() + timedelta(hours=2))
    assert reply.text == f"🔕 {instance} muted until {until}."
    row = await world.db.fetch_one("SELECT muted_until FROM instances WHERE id = ?", (instance,))
    assert row is not None and row["muted_until"] == until
    [event] = await world.events("muted")
    assert event["actor"] == f"tg:{ADMIN}" and json.loads(event["payload"]) == {"until": until}

    reply = await world.ask("mute", f"{instance} off")
    assert "on again" in (reply.text or "")
    row = await world.db.fetch_one("SELECT muted_until FROM instances WHERE id = ?", (instance,))
    assert row is not None and row["muted_until"] is None
    assert len(await world.events("unmuted")) == 1

    for args in ["", instance, f"{instance} 2x", f"{instance} 0h", f"{instance} 31d", "a b c"]:
        assert ((await world.ask("mute", args)).text or "").startswith("Usage: /mute"), args
    assert (
        await world.ask("mute", "inst_nope00000000 1d")
    ).text == "No instance inst_nope00000000."


async def test_stats_match_hand_computed_figures(world: World) -> None:
    paying = [await world.provision(f"m{n}@example.com", subscription_id=f"sub_0{n}") for n in "12"]
    late = await world.provision("late@example.com", subscription_id="sub_03")
    comped = await world.provision("friend@example.com")
    gone = await world.provision("gone@example.com")
    async with world.db.transaction() as conn:
        await conn.execute("UPDATE subscriptions SET status = 'past_due' WHERE id = 'sub_03'")
        customer = await (
            await conn.execute("SELECT customer_id FROM instances WHERE id = ?", (comped,))
        ).fetchone()
        assert customer is not None
        for txn, refunded in (("txn_01", None), ("txn_02", "2026-11-20T00:00:00.000000Z")):
            await conn.execute(
                "INSERT INTO purchases (id, customer_id, price_id, occurred_at, changed_at, "
                "refunded_at, created_at) VALUES (?, ?, 'pri_x', ?, ?, ?, ?)",
                (txn, customer[0], "t", "t", refunded, "t"),
            )
    await set_columns(world, paying[0], status="active", server_monthly_price_eur=3.79)
    await set_columns(world, paying[1], status="active", server_monthly_price_eur=3.79)
    await set_columns(world, late, status="failed", server_monthly_price_eur=4.51)
    await set_columns(world, gone, status="destroyed", server_monthly_price_eur=10.0)

    text = (await world.ask("stats")).text or ""
    # 2 active monthly subscriptions at $29; the past-due one is not counted.
    assert "MRR: $58.00 (2 monthly paying, 1 past due)" in text
    # 3.79 + 3.79 + 4.51 = €12.09 for the servers that exist; × 1.08 = $13.0572.
    assert "Servers: €12.09 = $13.06 a month (3 servers, EUR_USD 1.08)" in text
    # 2 × (5 % of $29 + $0.50) = $3.90.
    assert "Paddle fees: $3.90 a month" in text
    # 58 − 13.0572 − 3.90 = 41.0428.
    assert "Margin: $41.04 a month" in text
    assert "Lifetime: 1 / 100" in text  # the refunded purchase does not count
    assert "active 2" in text and "failed 1" in text and "provisioning 1" in text
    assert "destroyed 1" in text and "suspended 0" in text


async def test_help_lists_every_command(world: World) -> None:
    text = (await world.ask("help")).text or ""
    for command in (
        "list",
        "status",
        "suspend",
        "resume",
        "reprovision",
        "retry",
        "destroy",
        "logs",
        "mute",
        "stats",
        "help",
    ):
        assert f"/{command}" in text
