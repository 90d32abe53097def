"""Telegram upgrades a group to a supergroup with a new chat id: follow the ops group.

The service message in the old group carries `migrate_to_chat_id`; from then on the
new id is the ops chat (DESIGN.md: the migrated id wins), so admins keep their commands
at once, not only after the outbox next bumps into the old id.
"""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.types import BotCommandScopeChat, Message

from bot.admin.help import admin_bot_commands
from bot.context import BotContext
from bot.ops_chat import ops_chat_id, set_ops_chat_id

log = logging.getLogger(__name__)


def build_router() -> Router:
    router = Router(name="ops_migration")

    @router.message(F.migrate_to_chat_id)
    async def group_migrated(message: Message, ctx: BotContext) -> None:
        current = await ops_chat_id(ctx.core.db, ctx.settings)
        new_id = message.migrate_to_chat_id
        if new_id is None or message.chat.id != current:
            return  # some other group: none of our business
        await set_ops_chat_id(ctx.core.db, new_id)
        log.info("the ops group moved from %s to %s", current, new_id)
        try:
            await message.bot.set_my_commands(  # type: ignore[union-attr]
                admin_bot_commands(), scope=BotCommandScopeChat(chat_id=new_id)
            )
        except Exception as exc:  # the menu is a convenience: never block the move on it
            log.warning("could not set the command menu in the new group: %s", type(exc).__name__)

    return router
