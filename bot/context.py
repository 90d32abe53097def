"""What the bot and the outbox sender need from the rest of the process, handed in by `app/`."""

from __future__ import annotations

from dataclasses import dataclass

from core.gateway_control import GatewayControl
from core.login_tokens import LoginTokens
from core.services import CoreServices
from core.settings import Settings


@dataclass
class BotContext:
    settings: Settings
    core: CoreServices
    login_tokens: LoginTokens
    gateway: GatewayControl
    bot_username: str = ""  # from getMe at start-up, for t.me/<bot>?start=… links
