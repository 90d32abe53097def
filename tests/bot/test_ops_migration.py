"""The ops group upgraded to a supergroup: admins keep their commands in the new chat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.context import BotContext
from bot.ops_chat import ops_chat_id
from sim.telegram import TelegramSim
from tests.bot.conftest import ADMIN, make_runtime


async def test_admin_commands_follow_the_migrated_ops_group(
    sim: TelegramSim, make_context: Callable[..., BotContext]
) -> None:
    admin = sim.add_user("Ada", user_id=ADMIN, username="ada")
    group = sim.add_group("Ops", owner=admin, supergroup=False, bot_is_admin=True)
    ctx = make_context(ops_chat_id=group.id)
    runtime = make_runtime(ctx, sim)
    await runtime.start()
    try:
        new_id = sim.migrate_group(group.id)
        for _ in range(100):  # the service message is handled by the polling task
            if await ops_chat_id(ctx.core.db, ctx.settings) == new_id:
                break
            await asyncio.sleep(0.02)
        assert await ops_chat_id(ctx.core.db, ctx.settings) == new_id
        sim.send_command(new_id, admin, "help")
        reply = await sim.next_bot_message(new_id)
        assert "/list" in (reply.text or "")
    finally:
        await runtime.stop()
