"""Customers' private chats: the deep link that binds a chat, /status, /link, /restart,
/help. The rules (who is whose, the limits) live in `core.customer_access`; this file
only words the answers.

A chat bound to nobody gets the same short help whatever it sends: no instance, no
customer, not even whether a token exists. Replies are HTML with every value escaped,
and with link previews off, so Telegram does not fetch the login link (its GET would
use nothing, but the link is still a secret to keep out of third parties' logs).
"""

from __future__ import annotations

import html
import logging
import math
from datetime import timedelta

from aiogram import F, Router
from aiogram.exceptions import TelegramRetryAfter
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BotCommand, LinkPreviewOptions, Message

from bot.context import BotContext
from core.customer_access import (
    BindOutcome,
    CustomerAccess,
    CustomerInstance,
    RestartOutcome,
)
from core.models import Status

log = logging.getLogger(__name__)

MAX_REPLY_WAIT_S = 30

router = Router(name="customer")
router.message.filter(F.chat.type == "private")

CUSTOMER_COMMANDS: tuple[tuple[str, str], ...] = (
    ("status", "Your OpenClaw server and its address"),
    ("link", "A fresh login link"),
    ("restart", "Restart your OpenClaw gateway"),
    ("help", "What I can do"),
)

STATUS_WORDS: dict[str, str] = {
    Status.PROVISIONING: "⏳ being set up",
    Status.ACTIVE: "🟢 running",
    Status.SUSPENDED: "⏸ suspended",
    Status.FAILED: "🔴 needs our attention (we are on it)",
}

STRANGER_HELP = (
    "Hi! I am the OpenClaw Hosted bot.\n\n"
    "To connect this chat to your OpenClaw server, open the Telegram link from your "
    "purchase confirmation (it starts with t.me/…?start=). If you have not bought one "
    "yet, visit our website."
)
UNKNOWN_LINK = (
    "I do not recognise this link (yet). If you have just paid, give it a minute and "
    "tap the link again. If it still does not work, contact our support."
)
USED_LINK = (
    "This link has already connected another chat. Each link works once. If that was "
    "not you, contact our support."
)


def customer_bot_commands() -> list[BotCommand]:
    """For setMyCommands in private chats."""
    return [BotCommand(command=name, description=text) for name, text in CUSTOMER_COMMANDS]


def customer_help() -> str:
    lines = ["<b>What I can do</b>"]
    lines += [f"/{name} — {html.escape(text)}" for name, text in CUSTOMER_COMMANDS]
    return "\n".join(lines)


def _access(ctx: BotContext) -> CustomerAccess:
    # Stateless (its limits are in the database): cheap to build per update.
    return CustomerAccess(ctx.core.db, ctx.core.clock, ctx.core.admin)


async def _say(message: Message, text: str, ctx: BotContext) -> None:
    """Answer; a flood-limited answer is sent once more after Telegram's wait, then
    dropped (whoever sends five commands a second is not owed every answer)."""
    for attempt in (1, 2):
        try:
            await message.answer(
                text, parse_mode="HTML", link_preview_options=LinkPreviewOptions(is_disabled=True)
            )
            return
        except TelegramRetryAfter as error:
            if attempt == 2:
                log.warning(
                    "customer reply dropped: flood limit", extra={"retry_after": error.retry_after}
                )
                return
            await ctx.core.clock.sleep(min(error.retry_after, MAX_REPLY_WAIT_S))


def _user_id(message: Message) -> int:
    return message.from_user.id if message.from_user else message.chat.id


def _minutes(delta: timedelta) -> str:
    minutes = max(1, math.ceil(delta.total_seconds() / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


async def _login_link(ctx: BotContext, instance: CustomerInstance) -> str:
    token = await ctx.login_tokens.mint(instance.id)
    url = f"{ctx.settings.public_base_url.rstrip('/')}/login/{token}"
    days = max(1, ctx.login_tokens.ttl.days)
    return (
        f'🔑 <a href="{html.escape(url)}">Log in to your OpenClaw</a>\n'
        f"<code>{html.escape(url)}</code>\n"
        f"The link works once, within {days} days: it shows your one-time owner login "
        "and your gateway password."
    )


async def _setup_message(ctx: BotContext, access: CustomerAccess, customer_ids: list[str]) -> str:
    """The setup message when a server runs, otherwise where things stand."""
    instances = await access.instances(customer_ids)
    ready = [i for i in instances if i.status == Status.ACTIVE]
    if ready:
        parts = []
        for instance in ready:
            address = instance.control_ui(ctx.settings.gateway_port) or ""
            parts.append(
                f"✅ <b>Your OpenClaw is ready.</b>\n"
                f"Control UI: <code>{html.escape(address)}</code>\n"
                + await _login_link(ctx, instance)
            )
        return "\n\n".join(parts) + "\n\nA new login link any time: /link"
    provisioning = [i for i in instances if i.status == Status.PROVISIONING]
    if provisioning:
        eta = _minutes(access.provisioning_eta(provisioning[0]))
        return (
            f"⏳ Your OpenClaw server is being set up: about {eta} to go. "
            "I will send you the way in here as soon as it is ready."
        )
    if instances:
        return _status_text(ctx, instances)
    return (
        "⏳ We have your order; your OpenClaw server will be set up shortly. "
        "I will send you the way in here as soon as it is ready."
    )


def _status_text(ctx: BotContext, instances: list[CustomerInstance]) -> str:
    if not instances:
        return "You have no OpenClaw server at the moment."
    lines = []
    for instance in instances:
        words = STATUS_WORDS.get(instance.status, html.escape(instance.status))
        line = f"<b>OpenClaw server</b> <code>{html.escape(instance.id)}</code>: {words}"
        address = instance.control_ui(ctx.settings.gateway_port)
        if address:
            line += f"\nControl UI: <code>{html.escape(address)}</code>"
        lines.append(line)
    return "\n\n".join(lines)


@router.message(CommandStart())
async def start(message: Message, command: CommandObject, ctx: BotContext) -> None:
    access = _access(ctx)
    token = (command.args or "").strip()
    if not token:
        customers = await access.customers_for_chat(message.chat.id)
        await _say(message, customer_help() if customers else STRANGER_HELP, ctx)
        return
    binding = await access.bind_chat(token, message.chat.id, _user_id(message))
    if binding.outcome is BindOutcome.UNKNOWN:
        await _say(message, UNKNOWN_LINK, ctx)
        return
    if binding.outcome is BindOutcome.USED:
        await _say(message, USED_LINK, ctx)
        return
    customers = await access.customers_for_chat(message.chat.id)
    greeting = "🎉 This chat is now connected to your OpenClaw Hosted account.\n\n"
    if binding.outcome is BindOutcome.ALREADY:
        greeting = "This chat is already connected to your account.\n\n"
        # Tapping the link again mints a login link too: the same budget as /link.
        limited = await access.reserve_link(binding.customer_id or "", _user_id(message))
        if limited is not None:
            instances = await access.instances(customers)
            await _say(message, greeting + _status_text(ctx, instances), ctx)
            return
    await _say(message, greeting + await _setup_message(ctx, access, customers), ctx)


@router.message(Command("help"))
async def help_command(message: Message, ctx: BotContext) -> None:
    customers = await _access(ctx).customers_for_chat(message.chat.id)
    await _say(message, customer_help() if customers else STRANGER_HELP, ctx)


@router.message(Command("status"))
async def status(message: Message, ctx: BotContext) -> None:
    access = _access(ctx)
    customers = await access.customers_for_chat(message.chat.id)
    if not customers:
        await _say(message, STRANGER_HELP, ctx)
        return
    await _say(message, _status_text(ctx, await access.instances(customers)), ctx)


@router.message(Command("link"))
async def link(message: Message, ctx: BotContext) -> None:
    access = _access(ctx)
    customers = await access.customers_for_chat(message.chat.id)
    if not customers:
        await _say(message, STRANGER_HELP, ctx)
        return
    ready = [i for i in await access.instances(customers) if i.status == Status.ACTIVE]
    if not ready:
        await _say(message, "Your OpenClaw server is not running right now. See /status.", ctx)
        return
    # Limited per customer (the first bound one: one person, one budget).
    wait = await access.reserve_link(customers[0], _user_id(message))
    if wait is not None:
        await _say(
            message, f"You asked for several links just now. Try again in {_minutes(wait)}.", ctx
        )
        return
    parts = [await _login_link(ctx, instance) for instance in ready]
    await _say(message, "\n\n".join(parts), ctx)


@router.message(Command("restart"))
async def restart(message: Message, command: CommandObject, ctx: BotContext) -> None:
    access = _access(ctx)
    customers = await access.customers_for_chat(message.chat.id)
    if not customers:
        await _say(message, STRANGER_HELP, ctx)
        return
    instances = await access.instances(customers)
    wanted = (command.args or "").strip()
    if not wanted:
        running = [i for i in instances if i.status == Status.ACTIVE]
        if len(running) != 1:
            ids = "\n".join(f"/restart <code>{html.escape(i.id)}</code>" for i in running)
            text = (
                "Which server? Send one of:\n" + ids
                if running
                else "Your OpenClaw server is not running, so there is nothing to restart."
            )
            await _say(message, text, ctx)
            return
        wanted = running[0].id
    result = await access.restart(customers, wanted, _user_id(message))
    if result.outcome is RestartOutcome.QUEUED:
        text = "🔄 Restarting your OpenClaw gateway. It is back within a minute or two."
    elif result.outcome is RestartOutcome.TOO_SOON:
        text = (
            "Your gateway was restarted only a few minutes ago. "
            f"You can restart it again in {_minutes(result.wait)}."
        )
    elif result.outcome is RestartOutcome.NOT_RUNNING:
        text = "Your OpenClaw server is not running, so there is nothing to restart."
    else:
        text = "You have no OpenClaw server with that id. See /status."
    await _say(message, text, ctx)


@router.message()
async def anything_else(message: Message, ctx: BotContext) -> None:
    await help_command(message, ctx)
