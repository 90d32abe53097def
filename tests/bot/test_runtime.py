"""The runtime: start/stop on the test's loop, menus, crash recovery, 409 alerts."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiohttp
import aiosqlite
import pytest
from aiohttp import web

from bot.context import BotContext
from bot.runtime import WEBHOOK_PATH
from db.connection import Database
from sim.telegram import TelegramSim
from tests.bot.conftest import OPS_CHAT, World, eventually, make_runtime

CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)

# Every test here ends with no task of the bot left running.
pytestmark = pytest.mark.usefixtures("no_task_left_behind")


async def _notifications(db: Database, kind: str) -> list[aiosqlite.Row]:
    return await db.fetch_all("SELECT * FROM notifications WHERE kind = ? ORDER BY id", (kind,))


async def _some(rows: Awaitable[list[aiosqlite.Row]]) -> list[aiosqlite.Row] | None:
    return (await rows) or None


async def _true(condition: bool) -> bool | None:
    return True if condition else None


async def test_start_sets_name_and_menus_and_stop_leaves_nothing(
    sim: TelegramSim, make_context: Callable[..., BotContext]
) -> None:
    ctx = make_context()
    runtime = make_runtime(ctx, sim)
    await runtime.start()
    assert ctx.bot_username == "openclaw_hosted_bot"
    assert runtime.polling
    await sim.wait_until(lambda: sim.polling or None)
    menus = [c.params for c in sim.calls if c.method.lower() == "setmycommands"]
    scopes = [json.loads(str(p["scope"])) for p in menus]
    assert {"type": "chat", "chat_id": OPS_CHAT} in scopes
    assert {"type": "all_private_chats"} in scopes
    ops_menu = json.loads(
        str(menus[scopes.index({"type": "chat", "chat_id": OPS_CHAT})]["commands"])
    )
    assert {c["command"] for c in ops_menu} >= {"list", "status", "destroy", "mute", "stats"}
    await runtime.stop()
    assert not runtime.polling
    assert runtime.bot.session._session is None or runtime.bot.session._session.closed
    # The autouse fixture checks that no task is left behind.


async def test_a_crashed_polling_task_is_reported_and_restarted(
    sim: TelegramSim, make_context: Callable[..., BotContext]
) -> None:
    ctx = make_context()
    runtime = make_runtime(ctx, sim)
    crashes = iter([True])

    async def flaky_startup() -> None:
        if next(crashes, False):
            raise RuntimeError("boom")

    runtime.dispatcher.startup.register(flaky_startup)
    admin = sim.add_user("Ada", user_id=1001)
    sim.add_group("Ops", chat_id=OPS_CHAT, owner=admin, bot_is_admin=True)
    await runtime.start()
    try:
        alerts = await eventually(lambda: _some(_notifications(ctx.core.db, "bot_polling_crashed")))
        assert len(alerts) == 1 and "RuntimeError" in alerts[0]["body"]
        assert "boom" not in alerts[0]["body"]  # only the type: the text may hold the token
        assert alerts[0]["recipient"] == "ops"
        # Restarted: the bot answers again.
        sim.send_command(OPS_CHAT, admin, "help")
        reply = await sim.next_bot_message(OPS_CHAT)
        assert (reply.text or "").startswith("Admin commands")
        assert runtime.crashes == 1 and runtime.polling
    finally:
        await runtime.stop()


async def test_409_conflict_alerts_the_ops_group_once(world: World) -> None:
    world.sim.fail_next("getUpdates", 3, error_code=409, description=CONFLICT)
    # aiogram keeps polling through the conflict; we only need to notice it.
    await eventually(lambda: _true(world.runtime.conflicts >= 3))
    alerts = await _notifications(world.db, "bot_conflict")
    assert len(alerts) == 1 and "409" in alerts[0]["body"]
    reply = await world.ask("help")
    assert (reply.text or "").startswith("Admin commands")
    world.sim.fail_next("getUpdates", 1, error_code=409, description=CONFLICT)
    await world.ask("help")  # ends the poll in flight; the next one meets the 409
    await eventually(lambda: _true(world.runtime.conflicts >= 4))
    assert len(await _notifications(world.db, "bot_conflict")) == 1  # once, not per retry


async def test_webhook_mode_answers_through_the_route_and_checks_the_secret(
    sim: TelegramSim,
    make_context: Callable[..., BotContext],
    unused_tcp_port: int,
) -> None:
    port = unused_tcp_port
    ctx = make_context(
        telegram_mode="webhook",
        telegram_webhook_secret="hook-secret-123",
        public_base_url=f"http://127.0.0.1:{port}",
    )
    runtime = make_runtime(ctx, sim)
    app = web.Application()
    runtime.add_webhook_route(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    admin = sim.add_user("Ada", user_id=1001)
    sim.add_group("Ops", chat_id=OPS_CHAT, owner=admin, bot_is_admin=True)
    try:
        await runtime.start()
        assert sim.webhook is not None and sim.webhook["url"].endswith(WEBHOOK_PATH)
        sim.send_command(OPS_CHAT, admin, "help")
        reply = await sim.next_bot_message(OPS_CHAT)
        assert (reply.text or "").startswith("Admin commands")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                json={"update_id": 1},
                headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
            ) as response,
        ):
            assert response.status == 401
    finally:
        await runtime.stop()
        await runner.cleanup()
