"""Who may use the admin commands: ADMIN_USER_IDS, in the ops chat only.

The admin routers only see group chats (private chats belong to the customer router);
this middleware runs after a handler's filters matched, so it sees exactly the admin
commands and buttons. Anyone else is ignored and audited as `telegram_denied`.
Button presses are checked against the presser: any member of a group can press.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, F
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.context import BotContext
from bot.ops_chat import ops_chat_id
from core.journal import record_event
from core.models import telegram_actor

GROUP_TYPES = frozenset({"group", "supergroup"})
IN_GROUP_MESSAGE = F.chat.type.in_(GROUP_TYPES)
IN_GROUP_CALLBACK = F.message.chat.type.in_(GROUP_TYPES)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class AdminGate(BaseMiddleware):
    """Lets an admin's command or press through, with `actor` ("tg:<id>") in the data."""

    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Message):
            user_id = event.from_user.id if event.from_user else 0
            chat_id = event.chat.id
            what = (event.text or "").split(maxsplit=1)[0][:64] if event.text else ""
        elif isinstance(event, CallbackQuery):
            user_id = event.from_user.id
            chat_id = event.message.chat.id if event.message else 0
            what = (event.data or "")[:64]
        else:
            return None
        if user_id in self.ctx.settings.admin_user_ids and chat_id == await ops_chat_id(
            self.ctx.core.db, self.ctx.settings
        ):
            data["actor"] = telegram_actor(user_id)
            return await handler(event, data)
        await self._audit(user_id, chat_id, what)
        if isinstance(event, CallbackQuery):
            await event.answer("Only admins in the ops group can do this.", show_alert=True)
        return None

    async def _audit(self, user_id: int, chat_id: int, what: str) -> None:
        core = self.ctx.core
        async with core.db.transaction() as conn:
            await record_event(
                conn,
                core.clock.now(),
                telegram_actor(user_id),
                "telegram_denied",
                payload={"chat_id": chat_id, "request": what},
            )
