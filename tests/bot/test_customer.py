"""Customers' private chats with the real aiogram against the Telegram simulator: the
deep link binds once, strangers learn nothing, and one customer never sees another's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot import customer
from bot.context import BotContext
from core.billing import Prices
from core.clock import FakeClock
from core.ids import new_token, token_hash
from core.login_tokens import LoginTokens
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.telegram import TelegramSim
from sim.telegram_model import SimUser
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE

TOKEN = "123456:TESTTOKEN"  # base_settings' bot token
LOGIN_URL = re.compile(r"https://openclaw\.test/login/([A-Za-z0-9_-]+)")


class UnusedGateway:
    """The bot only mints login links; the login page asks the server (tests/webhooks)."""

    async def owner_link(self, instance_id: str) -> str:
        raise AssertionError("the bot never asks the server for the owner link")

    async def gateway_password(self, instance_id: str) -> str:
        raise AssertionError("the bot never reads the gateway password")


@dataclass
class Chats:
    sim: TelegramSim
    ctx: BotContext
    clock: FakeClock

    @property
    def db(self) -> Database:
        return self.ctx.core.db

    async def say(self, user: SimUser, command: str, args: str = "") -> str:
        """The user writes to the bot in private; the bot's answer. People type at about
        one message a second, which the simulator scales to 10 ms."""
        await asyncio.sleep(0.012)
        self.sim.send_command(user.id, user, command, args)
        reply = await self.sim.next_bot_message(user.id)
        return reply.text or ""

    async def customer(self, email: str, *, active: bool, ip: str = "203.0.113.7") -> Customer:
        """A paid customer with an onboarding token from checkout, and an instance."""
        self.clock.advance(timedelta(seconds=1))
        result = await self.ctx.core.admin.provision(email, None, None, "api")
        token = new_token()
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE customers SET onboarding_token_hash = ? WHERE email = ?",
                (token_hash(token), email),
            )
            if active:
                await conn.execute(
                    "UPDATE instances SET status = 'active', server_ip = ? WHERE id = ?",
                    (ip, result.instance_id),
                )
        return Customer(result.instance_id, token)

    async def operations(self, instance_id: str) -> list[tuple[str, str, str]]:
        rows = await self.db.fetch_all(
            "SELECT kind, requested_by, state FROM operations WHERE instance_id = ? ORDER BY id",
            (instance_id,),
        )
        return [(r["kind"], r["requested_by"], r["state"]) for r in rows]


@dataclass
class Customer:
    instance_id: str
    onboarding_token: str


@pytest.fixture
async def chats(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> AsyncIterator[Chats]:
    settings = make_settings()
    core = build_core(
        db, clock, timings=PolicyTimings(), prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
        lifetime_cap=settings.lifetime_cap,
    )  # fmt: skip
    ctx = BotContext(settings, core, LoginTokens(db, clock, timedelta(days=7)), UnusedGateway())
    sim = TelegramSim(bot_token=TOKEN, bot_username="openclaw_hosted_bot", time_scale=0.01)
    await sim.start()
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(sim.url)))
    router = customer.router
    if router.parent_router is not None:  # attached by an earlier test's dispatcher
        router.parent_router.sub_routers.remove(router)
        router._parent_router = None
    dp = Dispatcher()
    dp["ctx"] = ctx
    dp.include_router(router)
    started = asyncio.Event()
    dp.startup.register(started.set)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({polling, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    try:
        yield Chats(sim, ctx, clock)
    finally:
        await dp.stop_polling()
        await polling
        await sim.stop()


async def test_deep_link_binds_once_then_sends_the_way_in(chats: Chats) -> None:
    ada = chats.sim.add_user("Ada")
    eve = chats.sim.add_user("Eve")
    paid = await chats.customer("ada@example.com", active=False)

    reply = await chats.say(ada, "start", paid.onboarding_token)
    assert "now connected" in reply and "being set up: about 5 minutes" in reply
    row = await chats.db.fetch_one(
        "SELECT telegram_chat_id, onboarding_token_used_at FROM customers WHERE email = ?",
        ("ada@example.com",),
    )
    assert row is not None and row["telegram_chat_id"] == ada.id and row["onboarding_token_used_at"]
    events = await chats.db.fetch_all(
        "SELECT actor FROM events WHERE event_type = 'telegram_bound'"
    )
    assert [e["actor"] for e in events] == [f"tg:{ada.id}"]

    # Single-use: someone else with the same link learns nothing and binds nothing.
    reply = await chats.say(eve, "start", paid.onboarding_token)
    assert "already connected another chat" in reply and "inst_" not in reply
    assert await chats.say(eve, "status") == customer.STRANGER_HELP

    # Ready: the same chat tapping its link again gets the setup message.
    async with chats.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET status = 'active', server_ip = '203.0.113.7' WHERE id = ?",
            (paid.instance_id,),
        )
    reply = await chats.say(ada, "start", paid.onboarding_token)
    assert "already connected" in reply and "Your OpenClaw is ready" in reply
    assert "Control UI: http://203.0.113.7:18789/" in reply
    [login] = set(LOGIN_URL.findall(reply))
    grant = await chats.ctx.login_tokens.check(login)  # a working login link, unused
    assert grant.instance_id == paid.instance_id


async def test_strangers_get_help_and_no_data(chats: Chats) -> None:
    eve = chats.sim.add_user("Eve")
    await chats.customer("ada@example.com", active=True)
    for command, args in (
        ("start", ""),
        ("help", ""),
        ("status", ""),
        ("link", ""),
        ("restart", ""),
        ("restart", "inst_000000000000"),
    ):
        assert await chats.say(eve, command, args) == customer.STRANGER_HELP
    await asyncio.sleep(0.012)
    chats.sim.send_text(eve.id, eve, "hello?")
    assert (await chats.sim.next_bot_message(eve.id)).text == customer.STRANGER_HELP
    reply = await chats.say(eve, "start", new_token())  # a token nobody paid with
    assert "do not recognise this link" in reply
    reply = await chats.say(eve, "start", "not a token!")
    assert "do not recognise this link" in reply
    assert await chats.db.fetch_all("SELECT * FROM operations") == []
    assert await chats.db.fetch_all("SELECT * FROM login_tokens") == []


async def test_status_link_and_its_limit(chats: Chats) -> None:
    ada = chats.sim.add_user("Ada")
    paid = await chats.customer("ada@example.com", active=True)
    await chats.say(ada, "start", paid.onboarding_token)  # mints one link (not counted)

    reply = await chats.say(ada, "status")
    assert paid.instance_id in reply and "running" in reply
    assert "Control UI: http://203.0.113.7:18789/" in reply
    assert "/help" in await chats.say(ada, "help")

    links = []
    for _ in range(3):
        reply = await chats.say(ada, "link")
        [token] = set(LOGIN_URL.findall(reply))
        assert (await chats.ctx.login_tokens.check(token)).instance_id == paid.instance_id
        links.append(token)
    assert len(set(links)) == 3
    chats.clock.advance(timedelta(minutes=20))
    reply = await chats.say(ada, "link")
    assert "Try again in 40 minutes" in reply and not LOGIN_URL.search(reply)
    reply = await chats.say(ada, "start", paid.onboarding_token)  # no way around the limit
    assert "already connected" in reply and paid.instance_id in reply
    assert not LOGIN_URL.search(reply)
    chats.clock.advance(timedelta(minutes=40))
    assert LOGIN_URL.search(await chats.say(ada, "link"))


async def test_restart_at_most_once_per_ten_minutes(chats: Chats) -> None:
    ada = chats.sim.add_user("Ada")
    paid = await chats.customer("ada@example.com", active=True)
    await chats.say(ada, "start", paid.onboarding_token)

    assert "Restarting your OpenClaw gateway" in await chats.say(ada, "restart")
    actor = f"tg:{ada.id}"
    assert await chats.operations(paid.instance_id) == [("restart_gateway", actor, "pending")]
    chats.clock.advance(timedelta(minutes=4))
    reply = await chats.say(ada, "restart", paid.instance_id)
    assert "again in 6 minutes" in reply
    assert len(await chats.operations(paid.instance_id)) == 1

    async with chats.db.transaction() as conn:  # the reconciler ran it
        await conn.execute("UPDATE operations SET state = 'done'")
    chats.clock.advance(timedelta(minutes=6))
    assert "Restarting" in await chats.say(ada, "restart")
    assert await chats.operations(paid.instance_id) == [
        ("restart_gateway", actor, "done"),
        ("restart_gateway", actor, "pending"),
    ]


async def test_customers_see_only_their_own(chats: Chats) -> None:
    ada, bob = chats.sim.add_user("Ada"), chats.sim.add_user("Bob")
    ada_paid = await chats.customer("ada@example.com", active=True, ip="203.0.113.7")
    bob_paid = await chats.customer("bob@example.com", active=True, ip="198.51.100.9")
    await chats.say(ada, "start", ada_paid.onboarding_token)
    await chats.say(bob, "start", bob_paid.onboarding_token)

    replies = [await chats.say(bob, "status"), await chats.say(bob, "link")]
    replies.append(await chats.say(bob, "restart", ada_paid.instance_id))
    assert "no OpenClaw server with that id" in replies[-1]
    text = "\n".join(replies)
    assert bob_paid.instance_id in text and "198.51.100.9" in text
    assert ada_paid.instance_id not in text and "203.0.113.7" not in text
    assert await chats.operations(ada_paid.instance_id) == []
    [token] = set(LOGIN_URL.findall(replies[1]))
    assert (await chats.ctx.login_tokens.check(token)).instance_id == bob_paid.instance_id
    # Ada's token in Bob's chat binds nothing: it was used by Ada.
    assert "already connected another chat" in await chats.say(
        bob, "start", ada_paid.onboarding_token
    )
