"""/upgrade (asks first, single-use button), /rollout and its pause|resume|abort, /fleet."""

from __future__ import annotations

import json

import pytest

from bot.admin.fleet import rollout_admin
from bot.callbacks import RolloutConfirm
from core.lifecycle import LifecycleError
from core.resources import ResourceFigures
from sim.telegram_model import SimMessage
from tests.bot.conftest import ADMIN, ADMIN2, World

pytestmark = pytest.mark.usefixtures("no_task_left_behind")

NEW = "2026.10.1"


def button(message: SimMessage, yes: bool = True) -> str:
    packed = [data for data in message.button_data if data.startswith("ro:")]
    assert len(packed) == 2, message.button_data
    wanted = packed[0] if yes else packed[1]
    assert RolloutConfirm.unpack(wanted).yes is yes
    return wanted


async def active(world: World, email: str, **fields: object) -> str:
    """An instance as the reconciler leaves it once provisioned (no servers here)."""
    instance = await world.provision(email)
    values = {"status": "active", "openclaw_version": "2026.9.6", **fields}
    assignments = ", ".join(f"{name} = ?" for name in values)
    async with world.db.transaction() as conn:
        await conn.execute(
            f"UPDATE instances SET {assignments} WHERE id = ?",  # noqa: S608 (our names)
            (*values.values(), instance),
        )
    return instance


async def rollouts(world: World) -> list[dict[str, object]]:
    return [dict(r) for r in await world.db.fetch_all("SELECT * FROM rollouts ORDER BY id")]


async def test_upgrade_asks_then_starts_once_as_the_presser(world: World) -> None:
    await active(world, "a@example.com")
    await active(world, "b@example.com")
    question = await world.ask("upgrade", NEW)
    text = question.text or ""
    assert f"OpenClaw {NEW}?" in text and "2 active instances to upgrade" in text
    assert "canary 1" in text and "quiet hour" in text
    [proposal] = await rollouts(world)
    assert proposal["state"] == "proposed"  # nothing runs until confirmed

    yes = button(question)
    await world.press(question, yes, user=world.admin2)
    done = await world.edited(question)
    assert f"Rollout {proposal['id']} to OpenClaw {NEW} started" in (done.text or "")
    [started] = await rollouts(world)
    assert started["state"] == "running" and started["started_at"]
    [event] = await world.events("rollout_started")
    assert event["actor"] == f"tg:{ADMIN2}"
    assert json.loads(event["payload"])["version"] == NEW

    # A second press (a slow client's, the button still on its screen) starts nothing.
    with pytest.raises(LifecycleError, match="already running"):
        await rollout_admin(world.ctx).confirm(int(str(proposal["id"])), f"tg:{ADMIN}")
    assert len(await world.events("rollout_started")) == 1

    refused = await world.ask("upgrade", "2026.11.1")  # one rollout at a time
    assert "Rollout 1 is running" in (refused.text or "")


async def test_upgrade_refuses_bad_versions_and_can_be_cancelled(world: World) -> None:
    assert (await world.ask("upgrade")).text == "Usage: /upgrade <version>, e.g. /upgrade 2026.9.6"
    bogus = await world.ask("upgrade", "latest; rm -rf /")
    assert (bogus.text or "").startswith("Usage:")
    bogus = await world.ask("upgrade", "latest")
    assert "not an OpenClaw version" in (bogus.text or "")
    question = await world.ask("upgrade", NEW)
    await world.press(question, button(question, yes=False))
    assert "Cancelled" in ((await world.edited(question)).text or "")
    [proposal] = await rollouts(world)
    assert proposal["state"] == "canceled"
    assert (await world.ask("rollout")).text == "No rollout yet. /upgrade <version> starts one."


async def test_rollout_shows_progress_and_pauses_resumes_aborts(world: World) -> None:
    first = await active(world, "a@example.com")
    await active(world, "b@example.com", openclaw_version=NEW)  # already there
    question = await world.ask("upgrade", NEW)
    await world.press(question, button(question))
    await world.edited(question)

    shown = (await world.ask("rollout")).text or ""
    assert f"Rollout 1: OpenClaw 2026.9.6 → {NEW}, running (canary)" in shown
    assert "to do 1" in shown and f"{NEW}: 1" in shown and "2026.9.6: 1" in shown
    assert first in shown and "/rollout pause" in shown

    paused = (await world.ask("rollout", "pause")).text or ""
    assert "paused" in paused and "/rollout resume" in paused
    assert "cannot pause" in ((await world.ask("rollout", "pause")).text or "")
    assert "running" in ((await world.ask("rollout", "resume")).text or "")
    aborted = (await world.ask("rollout", "abort")).text or ""
    assert "aborted" in aborted
    assert "no rollout is open" in ((await world.ask("rollout", "abort")).text or "")
    assert (await world.ask("rollout", "now")).text == "Usage: /rollout [pause | resume | abort]"
    actors = {row["actor"] for row in await world.events("rollout_aborted")}
    assert actors == {f"tg:{ADMIN}"}
    # Operators on Telegram see their answer in the group; no alert says it again.
    alerts = await world.db.fetch_all("SELECT kind FROM notifications WHERE kind LIKE 'rollout%'")
    assert alerts == []


async def test_fleet_by_version_and_os_updates(world: World) -> None:
    figures = ResourceFigures(
        disk_used_pct=10.0,
        disk_used_gb=4.0,
        disk_total_gb=38.0,
        memory_used_mb=900,
        memory_total_mb=3814,
        gateway_state="active",
        gateway_memory_mb=800,
        updates_pending=0,
        security_updates=0,
        reboot_required=False,
    )
    clean = await active(world, "a@example.com", resources=figures.to_json())
    stale = ResourceFigures(**{**figures.__dict__, "updates_pending": 3, "security_updates": 2})
    behind = await active(world, "b@example.com", resources=stale.to_json())
    reboot = ResourceFigures(**{**figures.__dict__, "reboot_required": True})
    await active(world, "c@example.com", resources=reboot.to_json(), openclaw_version=NEW)
    await active(world, "d@example.com")  # never checked
    text = (await world.ask("fleet")).text or ""
    assert "New servers get OpenClaw 2026.9.6." in text
    assert "2026.9.6: 3" in text and f"{NEW}: 1" in text
    assert f"Security updates pending: 1: {behind} (2)" in text
    assert "Reboot required: 1" in text and "Not checked yet: 1" in text
    assert "Up to date: 1" in text and clean not in text.split("Up to date")[1]
