"""Admin commands only for ADMIN_USER_IDS, only in the (effective) ops chat; the rest is
ignored and audited; a button press is checked against the presser."""

from __future__ import annotations

import json

import aiosqlite
import pytest

from bot.callbacks import CardAction
from bot.ops_chat import set_ops_chat_id
from tests.bot.conftest import ADMIN, STRANGER, World, eventually

# Every test here ends with no task of the bot left running.
pytestmark = pytest.mark.usefixtures("no_task_left_behind")


async def test_a_stranger_in_the_ops_group_is_ignored_and_audited(world: World) -> None:
    await world.provision("a@example.com")
    world.sim.send_command(world.ops.id, world.stranger, "list")
    world.sim.send_command(world.ops.id, world.stranger, "destroy", "inst_x")
    reply = await world.ask("help")  # the next bot message answers the admin, not Eve
    assert (reply.text or "").startswith("Admin commands")
    assert len(world.sim.bot_messages(world.ops.id)) == 1

    async def two_denials() -> list[aiosqlite.Row] | None:
        rows = await world.events("telegram_denied")
        return list(rows) if len(rows) == 2 else None

    denied = await eventually(two_denials)
    assert {row["actor"] for row in denied} == {f"tg:{STRANGER}"}
    payloads = [json.loads(row["payload"]) for row in denied]
    assert sorted(p["request"] for p in payloads) == ["/destroy", "/list"]
    assert {p["chat_id"] for p in payloads} == {world.ops.id}


async def test_an_admin_in_another_group_is_ignored(world: World) -> None:
    other = world.sim.add_group("Friends", owner=world.admin, bot_is_admin=True)
    world.sim.send_command(other.id, world.admin, "stats")
    await world.ask("help")
    assert world.sim.bot_messages(other.id) == []
    denied = await eventually(lambda: _first(world, "telegram_denied"))
    assert denied["actor"] == f"tg:{ADMIN}"
    assert json.loads(denied["payload"])["chat_id"] == other.id


async def test_a_private_chat_never_reaches_the_admin_commands(world: World) -> None:
    world.sim.send_command(world.admin.id, world.admin, "stats")
    await world.ask("help")
    assert not any("Stats" in (m.text or "") for m in world.sim.bot_messages(world.admin.id))
    assert await world.events("telegram_denied") == []


async def test_a_non_admin_pressing_an_admins_button_is_refused(world: World) -> None:
    instance = await world.provision("a@example.com")
    card = await world.ask("status", instance)
    query = world.sim.press_button(
        world.ops.id,
        card.message_id,
        world.stranger,
        data=CardAction(action="suspend", instance=instance).pack(),
    )
    answer = await world.sim.wait_callback_answer(query.id)
    assert answer["show_alert"] in (True, "true") and "Only admins" in answer["text"]
    assert await world.db.fetch_all("SELECT * FROM bot_confirmations") == []
    denied = await eventually(lambda: _first(world, "telegram_denied"))
    assert denied["actor"] == f"tg:{STRANGER}"
    assert json.loads(denied["payload"])["request"].startswith("ca:suspend:")


async def test_the_migrated_ops_chat_wins(world: World) -> None:
    new_ops = world.sim.add_group("Ops 2", owner=world.admin, bot_is_admin=True)
    await set_ops_chat_id(world.db, new_ops.id)
    world.sim.send_command(new_ops.id, world.admin, "help")
    reply = await world.sim.next_bot_message(new_ops.id)
    assert (reply.text or "").startswith("Admin commands")
    world.sim.send_command(world.ops.id, world.admin, "help")  # the old id no longer counts
    await eventually(lambda: _first(world, "telegram_denied"))
    assert world.sim.bot_messages(world.ops.id) == []


async def _first(world: World, event_type: str) -> aiosqlite.Row | None:
    rows = await world.events(event_type)
    return rows[0] if rows else None
