"""/mute <id> <duration | off>: silence an instance's alerts for a while (2h, 30m, 1d)."""

from __future__ import annotations

import re
from datetime import timedelta

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.admin.common import instance_or_say, say, usage
from bot.context import BotContext
from bot.render import code, esc
from core.clock import to_iso
from core.mute import mute

USAGE = "/mute <instance id> <duration like 30m, 2h, 1d | off>"
MAX_MUTE = timedelta(days=30)  # a forgotten mute must not silence an instance for good
_DURATION = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta | None:
    match = _DURATION.match(text.lower())
    if match is None:
        return None
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return duration if timedelta(0) < duration <= MAX_MUTE else None


def build_router() -> Router:
    router = Router(name="admin.mute")

    @router.message(Command("mute"))
    async def mute_command(
        message: Message, command: CommandObject, ctx: BotContext, actor: str
    ) -> None:
        args = (command.args or "").split()
        off = len(args) == 2 and args[1].lower() == "off"
        duration = parse_duration(args[1]) if len(args) == 2 and not off else None
        if len(args) != 2 or (duration is None and not off):
            await say(message, usage(USAGE))
            return
        instance_id = args[0]
        if not await instance_or_say(ctx, message, instance_id):
            return
        until = None if off else ctx.core.clock.now() + (duration or timedelta(0))
        await mute(ctx.core.lifecycle, instance_id, until, actor)
        if until is None:
            await say(message, f"🔔 Alerts for {code(instance_id)} are on again.")
        else:
            await say(message, f"🔕 {code(instance_id)} muted until {esc(to_iso(until))}.")

    return router
