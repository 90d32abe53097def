"""The bot against the Telegram simulator: real aiogram, a real SQLite file, real core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import aiosqlite
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.utils.backoff import BackoffConfig

from bot.context import BotContext
from bot.runtime import BotRuntime
from core.billing import Prices
from core.clock import FakeClock
from core.login_tokens import LoginTokens
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.telegram import TelegramSim
from sim.telegram_model import SimChat, SimMessage, SimUser
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE

TOKEN = "123456:TESTTOKEN"  # base_settings' token
BOT_NAME = "openclaw_hosted_bot"
OPS_CHAT = -1001234567890  # base_settings' OPS_CHAT_ID
ADMIN, ADMIN2, STRANGER = 1001, 1002, 2001
FAST_BACKOFF = BackoffConfig(min_delay=0.05, max_delay=0.1, factor=1.5, jitter=0.0)
T = TypeVar("T")


class FakeGateway:
    """The customer's server is out of scope for the admin interface."""

    async def owner_link(self, instance_id: str) -> str:
        return f"https://gateway.test/{instance_id}"

    async def gateway_password(self, instance_id: str) -> str:
        return "not-used-here"


@dataclass
class World:
    sim: TelegramSim
    ops: SimChat
    admin: SimUser
    admin2: SimUser
    stranger: SimUser
    ctx: BotContext
    runtime: BotRuntime
    clock: FakeClock

    @property
    def db(self) -> Database:
        return self.ctx.core.db

    async def ask(self, command: str, args: str = "", user: SimUser | None = None) -> SimMessage:
        """An admin (by default) sends a command in the ops group; the bot's reply."""
        self.sim.send_command(self.ops.id, user or self.admin, command, args)
        return await self.sim.next_bot_message(self.ops.id)

    async def press(self, message: SimMessage, data: str, user: SimUser | None = None) -> None:
        query = self.sim.press_button(
            self.ops.id, message.message_id, user or self.admin, data=data
        )
        await self.sim.wait_callback_answer(query.id)

    async def edited(self, message: SimMessage, edits: int = 1) -> SimMessage:
        """The message once it has been edited `edits` times."""
        current = self.sim.message(self.ops.id, message.message_id)
        return await self.sim.wait_until(lambda: current if len(current.edits) >= edits else None)

    async def provision(self, email: str, subscription_id: str | None = None) -> str:
        self.clock.advance(timedelta(seconds=1))  # so that "newest first" is well defined
        result = await self.ctx.core.admin.provision(email, None, subscription_id, "api")
        return result.instance_id

    async def events(self, event_type: str) -> list[aiosqlite.Row]:
        return await self.db.fetch_all(
            "SELECT * FROM events WHERE event_type = ? ORDER BY id", (event_type,)
        )


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 5.0) -> T:
    """Poll an async probe until it returns something (the bot works in its own tasks)."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = await probe()
            if found is not None:
                return found
            await asyncio.sleep(0.01)


@pytest.fixture
async def no_task_left_behind() -> AsyncIterator[None]:
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


@pytest.fixture
async def sim() -> AsyncIterator[TelegramSim]:
    simulator = TelegramSim(bot_token=TOKEN, bot_username=BOT_NAME, time_scale=0.01)
    await simulator.start()
    yield simulator
    await simulator.stop()


def make_bot(sim: TelegramSim) -> Bot:
    return Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(sim.url)))


@pytest.fixture
async def make_context(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> Callable[..., BotContext]:
    def make(**overrides: Any) -> BotContext:
        settings = make_settings(**overrides)
        core = build_core(
            db,
            clock,
            timings=PolicyTimings(),
            prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
            lifetime_cap=settings.lifetime_cap,
        )
        return BotContext(settings, core, LoginTokens(db, clock, timedelta(days=7)), FakeGateway())

    return make


def make_runtime(ctx: BotContext, sim: TelegramSim, **kwargs: Any) -> BotRuntime:
    kwargs.setdefault("restart_delay_s", 0.05)
    kwargs.setdefault("polling_backoff", FAST_BACKOFF)
    kwargs.setdefault("polling_timeout", 1)
    return BotRuntime(ctx, make_bot(sim), **kwargs)


@pytest.fixture
async def world(
    sim: TelegramSim, make_context: Callable[..., BotContext], clock: FakeClock
) -> AsyncIterator[World]:
    admin = sim.add_user("Ada", user_id=ADMIN, username="ada")
    admin2 = sim.add_user("Bob", user_id=ADMIN2)
    stranger = sim.add_user("Eve", user_id=STRANGER)
    ops = sim.add_group(
        "Ops", chat_id=OPS_CHAT, members=[stranger], admins=[admin2], owner=admin, bot_is_admin=True
    )
    ctx = make_context()
    runtime = make_runtime(ctx, sim)
    await runtime.start()
    try:
        yield World(sim, ops, admin, admin2, stranger, ctx, runtime, clock)
    finally:
        await runtime.stop()
