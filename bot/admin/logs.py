"""/logs <id> and the card's 📜 button: the provision log's tail, as a document when long.

The log is redacted before it is stored; `redact` runs again here anyway, because the
ops group must never see a secret even if an older row slipped through.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot.admin.common import say, usage
from bot.callbacks import CardAction
from bot.context import BotContext
from bot.render import code, esc
from core.redaction import redact
from core.settings import secret_values
from db.instances import get_instance

USAGE = "/logs <instance id>"
INLINE_CHARS = 3500  # what fits in one message with the <pre> and the header
TAIL_LINES = 40
DOCUMENT_BYTES = 1_000_000  # the tail sent as a file; Telegram takes up to 50 MB


async def send_logs(message: Message, ctx: BotContext, instance_id: str) -> None:
    row = await get_instance(ctx.core.db, instance_id)
    if row is None:
        await say(message, f"No instance {code(instance_id)}.")
        return
    log = redact(row["provision_log"] or "", secret_values(ctx.settings))
    if not log.strip():
        await say(message, f"The provision log of {code(instance_id)} is empty.")
        return
    tail = "\n".join(log.rstrip("\n").splitlines()[-TAIL_LINES:])
    if len(log) <= INLINE_CHARS:
        await say(message, f"Provision log of {code(instance_id)}:\n<pre>{esc(log)}</pre>")
        return
    if len(tail) > INLINE_CHARS:
        tail = tail[-INLINE_CHARS:]
    content = log.encode()[-DOCUMENT_BYTES:]
    await message.answer_document(
        BufferedInputFile(content, filename=f"{instance_id}-provision.log"),
        caption=f"Provision log of {code(instance_id)} ({len(log.splitlines())} lines)",
        parse_mode="HTML",
    )
    await say(message, f"Last lines:\n<pre>{esc(tail)}</pre>")


def build_router() -> Router:
    router = Router(name="admin.logs")

    @router.message(Command("logs"))
    async def logs_command(message: Message, command: CommandObject, ctx: BotContext) -> None:
        args = (command.args or "").split()
        if len(args) != 1:
            await say(message, usage(USAGE))
            return
        await send_logs(message, ctx, args[0])

    @router.callback_query(CardAction.filter(F.action == "logs"))
    async def logs_button(query: CallbackQuery, callback_data: CardAction, ctx: BotContext) -> None:
        await query.answer()
        if isinstance(query.message, Message):
            await send_logs(query.message, ctx, callback_data.instance)

    return router
