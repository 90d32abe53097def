"""/suspend, /resume, /reprovision, /retry, /destroy and the card's buttons: confirmed
with a button, done through core with the presser as actor, recorded in events."""

from __future__ import annotations

import json

import pytest

from bot.callbacks import CardAction, Confirm
from sim.telegram_model import SimMessage
from tests.bot.conftest import ADMIN, ADMIN2, World

pytestmark = pytest.mark.usefixtures("no_task_left_behind")


def confirm(message: SimMessage, yes: bool = True) -> str:
    """The data of the question's ✅ (or ✖️) button."""
    packed = [data for data in message.button_data if data.startswith("cf:")]
    assert len(packed) == 2, message.button_data
    wanted = packed[0] if yes else packed[1]
    assert Confirm.unpack(wanted).yes is yes
    return wanted


async def test_suspend_asks_then_suspends_as_the_presser(world: World) -> None:
    instance = await world.provision("a@example.com")
    question = await world.ask("suspend", f"{instance} card declined <twice>")
    assert "Suspend" in (question.text or "") and "card declined <twice>" in (question.text or "")
    assert await world.events("admin_suspended") == []  # nothing until confirmed
    await world.press(question, confirm(question), user=world.admin2)
    done = await world.edited(question)
    assert "suspended" in (done.text or "") and done.button_data == []
    [event] = await world.events("admin_suspended")
    assert event["actor"] == f"tg:{ADMIN2}" and event["instance_id"] == instance
    assert json.loads(event["payload"]) == {"reason": "card declined <twice>"}
    row = await world.db.fetch_one("SELECT admin_hold FROM instances WHERE id = ?", (instance,))
    assert row is not None and row["admin_hold"] == "suspended"

    resumed = await world.ask("resume", instance)
    assert "resumed" in (resumed.text or "")
    [event] = await world.events("admin_resumed")
    assert event["actor"] == f"tg:{ADMIN}"


async def test_bad_arguments_and_unknown_ids(world: World) -> None:
    instance = await world.provision("a@example.com")
    for command, args in [
        ("suspend", instance),  # no reason
        ("suspend", ""),
        ("resume", ""),
        ("resume", f"{instance} extra"),
        ("reprovision", ""),
        ("retry", f"{instance} now"),
        ("destroy", ""),
    ]:
        reply = await world.ask(command, args)
        assert (reply.text or "").startswith(f"Usage: /{command} <instance id>"), (command, args)
    for command, args in [
        ("suspend", "inst_unknown00000 a reason"),
        ("resume", "inst_unknown00000"),
        ("reprovision", "inst_unknown00000"),
        ("retry", "inst_unknown00000"),
        ("destroy", "inst_unknown00000"),
    ]:
        reply = await world.ask(command, args)
        assert reply.text == "No instance inst_unknown00000.", command
    assert await world.db.fetch_all("SELECT * FROM bot_confirmations") == []


async def test_reprovision_queues_an_operation_and_retry_refuses_a_healthy_one(
    world: World,
) -> None:
    instance = await world.provision("a@example.com")
    question = await world.ask("reprovision", instance)
    await world.press(question, confirm(question))
    done = await world.edited(question)
    assert "reprovision" in (done.text or "") and "queued" in (done.text or "")
    operation = await world.db.fetch_one(
        "SELECT kind, requested_by FROM operations WHERE instance_id = ?", (instance,)
    )
    assert operation is not None
    assert (operation["kind"], operation["requested_by"]) == ("reprovision", f"tg:{ADMIN}")

    question = await world.ask("retry", instance)
    await world.press(question, confirm(question))
    refused = await world.edited(question)
    assert (refused.text or "").startswith("❌ only a failed instance can be retried")


async def test_destroy_asks_twice_and_warns_when_still_paid(world: World) -> None:
    instance = await world.provision("a@example.com", subscription_id="sub_01paid")
    first = await world.ask("destroy", instance)
    assert "Destroy" in (first.text or "") and "still paid" in (first.text or "")
    await world.press(first, confirm(first))
    second = await world.edited(first)
    assert (second.text or "").startswith("Really destroy") and "still paid" in (second.text or "")
    assert await world.events("admin_destroyed") == []  # one press is not enough
    await world.press(second, confirm(second))
    done = await world.edited(first, 2)
    assert "being destroyed" in (done.text or "") and "still paid" in (done.text or "")
    [event] = await world.events("admin_destroyed")
    assert event["actor"] == f"tg:{ADMIN}"
    assert await world.db.fetch_all("SELECT * FROM bot_confirmations") == []

    again = await world.ask("destroy", instance)  # already destroyed: core refuses
    await world.press(again, confirm(again))
    await world.press(await world.edited(again), confirm(await world.edited(again)))
    assert "destroyed" in ((await world.edited(again, 2)).text or "")
    assert len(await world.events("admin_destroyed")) == 1


async def test_destroy_can_be_cancelled_and_a_used_button_acts_once(world: World) -> None:
    instance = await world.provision("a@example.com")
    question = await world.ask("destroy", instance)
    assert "still paid" not in (question.text or "")  # a comped instance
    no = confirm(question, yes=False)
    await world.press(question, no)
    assert (await world.edited(question)).text == f"Cancelled: destroy {instance}."
    assert await world.events("admin_destroyed") == []
    # A second press of a stale button (two admins at once) does nothing.
    other = await world.ask("suspend", f"{instance} abuse")
    yes = confirm(other)
    presses = [
        world.sim.press_button(world.ops.id, other.message_id, admin, data=yes)
        for admin in (world.admin, world.admin2)
    ]
    for query in presses:
        await world.sim.wait_callback_answer(query.id)
    texts = [version.text for version in (await world.edited(other, 2)).edits[1:]]
    texts.append(world.sim.message(world.ops.id, other.message_id).text)
    assert "This confirmation was already used." in texts
    assert len(await world.events("admin_suspended")) == 1


async def test_the_cards_buttons_ask_or_act(world: World) -> None:
    instance = await world.provision("a@example.com")
    card = await world.ask("status", instance)
    await world.press(card, CardAction(action="suspend", instance=instance).pack())
    question = await world.sim.next_bot_message(world.ops.id)
    assert "Suspend" in (question.text or "")
    await world.press(question, confirm(question))
    await world.edited(question)
    [event] = await world.events("admin_suspended")
    assert json.loads(event["payload"])["reason"] == "suspended from the /status card"

    await world.press(card, CardAction(action="resume", instance=instance).pack())
    resumed = await world.sim.next_bot_message(world.ops.id)
    assert "resumed" in (resumed.text or "")
    assert len(await world.events("admin_resumed")) == 1


async def test_destroys_first_button_pressed_twice_does_not_destroy(world: World) -> None:
    instance = await world.provision("a@example.com")
    question = await world.ask("destroy", instance)
    yes = confirm(question)
    presses = [
        world.sim.press_button(world.ops.id, question.message_id, admin, data=yes)
        for admin in (world.admin, world.admin)  # a double tap before the edit arrives
    ]
    for query in presses:
        await world.sim.wait_callback_answer(query.id)
    assert (await world.edited(question)).text.startswith("Really destroy")  # type: ignore[union-attr]
    assert await world.events("admin_destroyed") == []  # the second step is still asked
