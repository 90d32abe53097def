"""What several admin commands share: finding an instance, answering refusals."""

from __future__ import annotations

import contextlib

import aiosqlite
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message

from bot.context import BotContext
from bot.render import code, esc
from db.instances import get_instance

_SELECT = (
    "SELECT i.*, c.email AS customer_email, c.name AS customer_name FROM instances i "
    "JOIN customers c ON c.id = i.customer_id"
)


async def find_instances(ctx: BotContext, key: str) -> list[aiosqlite.Row]:
    """An instance id, a customer's email or a subscription id; newest first."""
    db = ctx.core.db
    if "@" in key:
        where, param = "lower(c.email) = lower(?)", key
    elif key.startswith("sub_"):
        where, param = "i.subscription_id = ?", key
    else:
        row = await get_instance(db, key)
        return [row] if row is not None else []
    return await db.fetch_all(
        f"{_SELECT} WHERE {where} ORDER BY i.created_at DESC, i.id",
        (param,),
    )


async def instance_or_say(ctx: BotContext, message: Message, instance_id: str) -> bool:
    """True when the instance exists; otherwise says so in the chat."""
    if await get_instance(ctx.core.db, instance_id) is not None:
        return True
    await say(message, f"No instance {code(instance_id)}.")
    return False


async def say(message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
    """HTML explicitly: the Bot is shared with the outbox, whose defaults are its own."""
    return await message.answer(text, parse_mode="HTML", reply_markup=markup)


async def edit_in_place(message: Message, text: str, markup: InlineKeyboardMarkup | None) -> None:
    # Pressing ▶ twice fast, or refreshing an unchanged card, edits to the same text.
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_text(text, parse_mode="HTML", reply_markup=markup)


def usage(text: str) -> str:
    return f"Usage: {esc(text)}"
