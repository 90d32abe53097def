"""/list and /status: pagination in place, lookups by id, email and subscription."""

from __future__ import annotations

import pytest

from bot.callbacks import CardAction, ListPage
from core.resources import ResourceFigures
from tests.bot.conftest import World

# Every test here ends with no task of the bot left running.
pytestmark = pytest.mark.usefixtures("no_task_left_behind")


async def test_list_paginates_and_edits_in_place(world: World) -> None:
    ids = [await world.provision(f"c{n}@example.com") for n in range(23)]
    first = await world.ask("list")
    assert "23 · page 1/3" in (first.text or "")
    assert first.button_data == [ListPage(status="", page=2).pack()]
    # Newest first; ids are copyable <code>.
    assert f"<code>{ids[-1]}</code>" in (first.source_text or "")
    assert ids[-11] not in (first.text or "")

    await world.press(first, ListPage(status="", page=2).pack())
    second = await world.edited(first)
    assert "page 2/3" in (second.text or "")
    assert ids[-11] in (second.text or "") and ids[-1] not in (second.text or "")
    assert second.button_data == [
        ListPage(status="", page=1).pack(),
        ListPage(status="", page=3).pack(),
    ]
    await world.press(second, ListPage(status="", page=3).pack())
    third = await world.edited(first, 2)
    assert "page 3/3" in (third.text or "") and ids[0] in (third.text or "")
    assert len(world.sim.bot_messages(world.ops.id)) == 1  # edited, never re-sent


async def test_list_filters_by_status_and_rejects_bad_arguments(world: World) -> None:
    await world.provision("a@example.com")
    reply = await world.ask("list", "provisioning")
    assert "provisioning · 1 · page 1/1" in (reply.text or "") and reply.button_data == []
    reply = await world.ask("list", "active")
    assert "None." in (reply.text or "")
    reply = await world.ask("list", "sleeping")
    assert (reply.text or "").startswith("Usage: /list")
    reply = await world.ask("list", "active extra")
    assert (reply.text or "").startswith("Usage: /list")


async def test_status_by_id_email_and_subscription(world: World) -> None:
    instance = await world.provision("Ann+<b>@example.com", subscription_id="sub_01abc")
    by_id = await world.ask("status", instance)
    assert instance in (by_id.text or "") and "provisioning" in (by_id.text or "")
    # Escaped, so an email with markup neither breaks nor injects HTML.
    assert "Ann+&lt;b&gt;@example.com" in (by_id.source_text or "")
    assert CardAction(action="suspend", instance=instance).pack() in by_id.button_data
    assert CardAction(action="logs", instance=instance).pack() in by_id.button_data
    by_email = await world.ask("status", "ann+<B>@example.com")
    assert by_email.text == by_id.text
    by_sub = await world.ask("status", "sub_01abc")
    assert by_sub.text == by_id.text


async def test_status_unknown_several_and_bad_arguments(world: World) -> None:
    first = await world.provision("two@example.com")
    second = await world.provision("two@example.com")
    reply = await world.ask("status", "two@example.com")
    assert "2 instances" in (reply.text or "")
    assert first in (reply.text or "") and second in (reply.text or "")
    reply = await world.ask("status", "inst_nonexistent0")
    assert reply.text == "No instance found for inst_nonexistent0."
    reply = await world.ask("status", "nobody@example.com")
    assert reply.text == "No instance found for nobody@example.com."
    reply = await world.ask("status")
    assert (reply.text or "").startswith("Usage: /status")


async def test_status_shows_what_the_monitor_last_saw(world: World) -> None:
    instance = await world.provision("mon@example.com")
    figures = ResourceFigures(91.0, 36.4, 40.0, 2900, 3800, "active", 1650)
    async with world.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET status = 'active', health_status = 'healthy', "
            "healthy_since = '2026-11-24T09:00:00.000000Z', "
            "last_health_check = '2026-11-24T11:55:00.000000Z', resources = ?, "
            "resources_checked_at = '2026-11-24T11:00:00.000000Z' WHERE id = ?",
            (figures.to_json(), instance),
        )
    text = (await world.ask("status", instance)).text or ""
    assert "Health: 💚 healthy since 2026-11-24T09:00:00" in text
    assert "checked 2026-11-24T11:55:00" in text
    assert "disk 91% of 40 GB · memory 2900/3800 MB · gateway active 1650 MB" in text
    async with world.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET health_status = 'unhealthy', consecutive_failures = 4, "
            "failing_since = '2026-11-24T11:40:00.000000Z' WHERE id = ?",
            (instance,),
        )
    text = (await world.ask("status", instance)).text or ""
    assert "💔 unhealthy, 4 failed checks since 2026-11-24T11:40:00" in text
