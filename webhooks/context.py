"""What the web face needs from the rest of the process, handed in by `app/`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from core.clock import Clock
from core.gateway_control import GatewayControl
from core.liveness import Liveness
from core.login_tokens import LoginTokens
from core.services import CoreServices
from core.settings import Settings
from db.connection import Database


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.paddle_events = Counter(
            "openclaw_paddle_webhooks",
            "Paddle webhook deliveries by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.admin_requests = Counter(
            "openclaw_admin_requests",
            "Admin API requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.instances = Gauge(
            "openclaw_instances", "Instances by actual status", ["status"], registry=self.registry
        )


@dataclass
class WebContext:
    settings: Settings
    core: CoreServices
    metrics: Metrics = field(default_factory=Metrics)
    # Called after a Paddle event is applied, e.g. to look up a new customer's email now.
    on_paddle_event: Callable[[], None] = lambda: None
    # The customer's way in (/login/<token>): set by app/ once the provisioner exists.
    login_tokens: LoginTokens | None = None
    gateway: GatewayControl | None = None
    # What GET /healthz reports of the scheduler, the reconciler, the outbox and the bot.
    liveness: Liveness = field(default_factory=Liveness)
    # The bot's @username (from Telegram's getMe), set by app/ once known: the welcome
    # page's t.me deep link needs it; until then the page says the link comes by email.
    bot_username: str | None = None

    @property
    def db(self) -> Database:
        return self.core.db

    @property
    def clock(self) -> Clock:
        return self.core.clock


CONTEXT = web.AppKey("context", WebContext)
