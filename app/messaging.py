"""Building what speaks to people: the Telegram bot, the outbox sender, login links."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.channels.email import EmailChannel
from bot.context import BotContext
from bot.outbox import OutboxSender
from bot.runtime import BotRuntime
from core.login_tokens import LoginTokens
from core.services import CoreServices
from core.settings import Settings
from provisioner.gateway_control import SshGatewayControl
from provisioner.infra import Infra

log = logging.getLogger(__name__)

BOT_RETRY_S = 30.0


@dataclass
class Messaging:
    context: BotContext
    bot: Bot
    runtime: BotRuntime
    outbox: OutboxSender

    async def keep_bot_running(self) -> None:
        """Start the bot, and keep trying while Telegram cannot be reached (the rest of
        the service, the webhook and provisioning included, goes on meanwhile)."""
        while True:
            try:
                await self.runtime.start()
                return
            except Exception as exc:  # a wrong token, Telegram down: say so, try again
                log.error("telegram bot not started (%s); retrying", type(exc).__name__)
                await asyncio.sleep(BOT_RETRY_S)

    async def close(self) -> None:
        await self.runtime.stop()
        await self.bot.session.close()


def build_messaging(settings: Settings, core: CoreServices, infra: Infra) -> Messaging:
    login_tokens = LoginTokens(core.db, core.clock, timedelta(days=settings.login_token_days))
    gateway = SshGatewayControl(core.db, infra.ssh, settings.gateway_port)
    context = BotContext(settings, core, login_tokens, gateway)
    bot = Bot(
        settings.telegram_bot_token.get_secret_value(),
        session=AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base)),
    )
    email = EmailChannel.from_settings(
        settings.smtp_url, settings.email_from, settings.public_base_url
    )
    return Messaging(
        context, bot, BotRuntime(context, bot), OutboxSender(context, bot, email=email)
    )
