"""/help: every admin command on one screen."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import BotCommand, Message

from bot.admin.common import say
from bot.render import esc

# (command, arguments, description): /help and setMyCommands read the same list.
ADMIN_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("list", "[status]", "Instances, 10 a page"),
    ("status", "<id | email | sub_…>", "An instance's card and buttons"),
    ("suspend", "<id> <reason>", "Suspend an instance (asks first)"),
    ("resume", "<id>", "Lift a suspension"),
    ("reprovision", "<id>", "Rebuild the server (asks first)"),
    ("retry", "<id>", "Retry a failed provisioning (asks first)"),
    ("destroy", "<id>", "Destroy for good (asks twice)"),
    ("logs", "<id>", "The provision log's tail"),
    ("mute", "<id> <30m|2h|1d|off>", "Silence an instance's alerts"),
    ("stats", "", "Instances, MRR, costs, margin"),
    ("fleet", "", "Instances by OpenClaw version and OS updates"),
    ("upgrade", "<version>", "Move the fleet to an OpenClaw version (asks first)"),
    ("rollout", "[pause|resume|abort]", "The fleet upgrade's progress"),
    ("help", "", "This list"),
)


def admin_bot_commands() -> list[BotCommand]:
    return [BotCommand(command=name, description=text) for name, _, text in ADMIN_COMMANDS]


def help_text() -> str:
    lines = ["<b>Admin commands</b>"]
    for name, args, text in ADMIN_COMMANDS:
        lines.append(f"/{name} {esc(args)} — {esc(text)}".replace("  ", " "))
    return "\n".join(lines)


def build_router() -> Router:
    router = Router(name="admin.help")

    @router.message(Command("help", "start"))
    async def help_command(message: Message) -> None:
        await say(message, help_text())

    return router
