"""/status <instance id | email | subscription id>: the instance's card with its buttons."""

from __future__ import annotations

import aiosqlite
from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.admin.common import find_instances, say, usage
from bot.callbacks import CardAction
from bot.context import BotContext
from bot.render import esc, instance_card, instance_line
from core.models import DesiredState

USAGE = "/status <instance id | email | subscription id>"
CARD_BUTTONS = (
    ("⏸ Suspend", "suspend"),
    ("▶️ Resume", "resume"),
    ("🔁 Reprovision", "reprovision"),
    ("🔄 Retry", "retry"),
    ("📜 Logs", "logs"),
)


def card_buttons(row: aiosqlite.Row) -> InlineKeyboardMarkup | None:
    if row["desired_state"] == DesiredState.DESTROYED:
        return None  # nothing can be done to a destroyed instance but read its logs
    builder = InlineKeyboardBuilder()
    for label, action in CARD_BUTTONS:
        builder.button(text=label, callback_data=CardAction(action=action, instance=row["id"]))
    builder.adjust(3, 2)
    return builder.as_markup()


def build_router() -> Router:
    router = Router(name="admin.status")

    @router.message(Command("status"))
    async def status_command(message: Message, command: CommandObject, ctx: BotContext) -> None:
        args = (command.args or "").split()
        if len(args) != 1:
            await say(message, usage(USAGE))
            return
        rows = await find_instances(ctx, args[0])
        if not rows:
            await say(message, f"No instance found for {esc(args[0])}.")
            return
        if len(rows) > 1:
            lines = [f"{len(rows)} instances for {esc(args[0])}:", *map(instance_line, rows)]
            await say(message, "\n".join(lines) + "\n/status &lt;instance id&gt; for a card.")
            return
        await say(message, instance_card(rows[0]), card_buttons(rows[0]))

    return router
