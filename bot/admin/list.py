"""/list [status]: instances, newest first, 10 a page, ◀ ▶ editing the message in place."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.admin.common import edit_in_place, say, usage
from bot.callbacks import ListPage
from bot.context import BotContext
from bot.render import esc, instance_line
from core.models import Status
from db.instances import list_instances

PER_PAGE = 10
USAGE = "/list [provisioning|active|suspended|failed|destroyed]"


async def render_page(
    ctx: BotContext, status: str, page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    rows, total = await list_instances(ctx.core.db, status=status or None, page=1, per_page=1)
    pages = max(1, -(-total // PER_PAGE))
    page = min(max(page, 1), pages)
    rows, total = await list_instances(
        ctx.core.db, status=status or None, page=page, per_page=PER_PAGE
    )
    title = f"<b>Instances</b>{' · ' + esc(status) if status else ''}"
    if total == 0:
        return f"{title}\nNone.", None
    lines = [f"{title} · {total} · page {page}/{pages}", *map(instance_line, rows)]
    builder = InlineKeyboardBuilder()
    if page > 1:
        builder.button(text="◀", callback_data=ListPage(status=status, page=page - 1))
    if page < pages:
        builder.button(text="▶", callback_data=ListPage(status=status, page=page + 1))
    return "\n".join(lines), builder.as_markup() if pages > 1 else None


def build_router() -> Router:
    router = Router(name="admin.list")

    @router.message(Command("list"))
    async def list_command(message: Message, command: CommandObject, ctx: BotContext) -> None:
        args = (command.args or "").split()
        if len(args) > 1 or (args and args[0] not in set(Status)):
            await say(message, usage(USAGE))
            return
        text, markup = await render_page(ctx, args[0] if args else "", 1)
        await say(message, text, markup)

    @router.callback_query(ListPage.filter())
    async def turn_page(query: CallbackQuery, callback_data: ListPage, ctx: BotContext) -> None:
        await query.answer()
        if isinstance(query.message, Message):
            text, markup = await render_page(ctx, callback_data.status, callback_data.page)
            await edit_in_place(query.message, text, markup)

    return router
