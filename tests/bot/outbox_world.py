"""A world for the outbox tests: the Telegram simulator, a real SMTP server (aiosmtpd),
a real SQLite file, the real core, and the sender, all on simulated time.

The simulator's flood limits run on the fake clock too (`sim.monotonic`), so a minute
of Telegram's limits passes in no real time and the sender's pacing is checked against
Telegram's own bookkeeping.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import aiosqlite
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.channels.email import EmailChannel
from bot.context import BotContext
from bot.outbox import OutboxSender
from core.billing import Prices
from core.clock import FakeClock
from core.journal import notify_customer, notify_ops
from core.login_tokens import LoginTokens
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.telegram import TelegramSim
from sim.telegram_model import SimChat, SimUser
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE

TOKEN = "123456:TESTTOKEN"  # base_settings' bot token
BOT_NAME = "openclaw_hosted_bot"
OPS_CHAT = -1001234567890  # base_settings' OPS_CHAT_ID
ALERT_EMAIL = "ops@openclaw.test"
CONTROL_UI = "http://203.0.113.7:18789/"


class FakeGateway:
    async def owner_link(self, instance_id: str) -> str:
        return f"http://203.0.113.7:18789/#bootstrapToken=x-{instance_id}"

    async def gateway_password(self, instance_id: str) -> str:
        return "never-in-a-message"


class Mailbox:
    """An aiosmtpd handler that keeps every message; `refuse` makes RCPT answer 550."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class World:
    sim: TelegramSim
    bot: Bot
    clock: FakeClock
    ctx: BotContext
    ops: SimChat
    mailbox: Mailbox
    outbox: OutboxSender
    smtp_port: int
    sends: list[tuple[int, datetime]] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.ctx.core.db

    async def drain(self, *, max_passes: int = 2000, until: datetime | None = None) -> int:
        """Run passes, jumping the clock to the next due moment, until nothing waits
        (or `until`); returns the number delivered."""
        delivered = 0
        for _ in range(max_passes):
            delivered += await self.outbox.send_due()
            due_in = await self.outbox.next_due_in()
            if due_in is None:
                return delivered
            step = timedelta(seconds=max(due_in, 0.001))
            if until is not None and self.clock.now() + step > until:
                self.clock.advance(max(until - self.clock.now(), timedelta(0)))
                return delivered + await self.outbox.send_due()
            self.clock.advance(step)
        raise AssertionError("the outbox did not settle")

    async def alert(self, kind: str, body: str, instance_id: str | None = None) -> None:
        async with self.db.transaction() as conn:
            await notify_ops(conn, self.clock.now(), kind, body, instance_id=instance_id)

    async def customer(self, email: str, *, user: SimUser | None = None) -> tuple[str, str]:
        """A customer with an instance (via the admin API's path); bound to `user`'s chat
        when given (the user has written to the bot, as the deep link makes them)."""
        result = await self.ctx.core.admin.provision(email, None, None, "api")
        row = await self.db.fetch_one(
            "SELECT customer_id FROM instances WHERE id = ?", (result.instance_id,)
        )
        assert row is not None
        customer_id = str(row["customer_id"])
        if user is not None:
            self.sim.send_text(user.id, user, "/start")
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE customers SET telegram_chat_id = ? WHERE id = ?", (user.id, customer_id)
                )
        await self.mark_all_sent()  # the "instance requested" alert is not what we test
        return customer_id, result.instance_id

    async def tell(
        self, customer_id: str, kind: str, instance_id: str, ref: dict[str, Any] | None = None
    ) -> None:
        async with self.db.transaction() as conn:
            await notify_customer(
                conn, self.clock.now(), customer_id, kind, instance_id=instance_id, ref=ref
            )

    async def setup(self, customer_id: str, instance_id: str) -> None:
        await self.tell(customer_id, "setup", instance_id, {"control_ui": CONTROL_UI})

    async def mark_all_sent(self) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE notifications SET status = 'sent' WHERE status = 'pending'")

    async def rows(self, status: str | None = None) -> list[aiosqlite.Row]:
        if status is None:
            return await self.db.fetch_all("SELECT * FROM notifications ORDER BY id")
        return await self.db.fetch_all(
            "SELECT * FROM notifications WHERE status = ? ORDER BY id", (status,)
        )

    def ops_texts(self, chat_id: int | None = None) -> list[str]:
        return [m.text or "" for m in self.sim.bot_messages(chat_id or self.ops.id)]


@asynccontextmanager
async def make_world(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings], **settings: Any
) -> AsyncIterator[World]:
    """Everything started, and everything stopped again afterwards (no task or port left)."""
    sim = TelegramSim(bot_token=TOKEN, bot_username=BOT_NAME, time_scale=1.0)
    sim.monotonic = lambda: clock.now().timestamp()  # Telegram's limits on simulated time
    await sim.start()
    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(sim.url)))
    try:
        values = {
            "smtp_url": f"smtp://127.0.0.1:{smtp_port}",
            "email_from": "OpenClaw Hosted <hello@openclaw.test>",
            "alert_email": ALERT_EMAIL,
            **settings,
        }
        config = make_settings(**values)
        core = build_core(
            db,
            clock,
            timings=PolicyTimings(),
            prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
            lifetime_cap=config.lifetime_cap,
        )
        ctx = BotContext(config, core, LoginTokens(db, clock), FakeGateway(), BOT_NAME)
        owner = sim.add_user("Ada", username="ada")
        ops = sim.add_group("Ops", chat_id=OPS_CHAT, owner=owner)
        email = EmailChannel.from_settings(
            config.smtp_url, config.email_from, config.public_base_url
        )
        world = World(
            sim, bot, clock, ctx, ops, mailbox, OutboxSender(ctx, bot, email=email), smtp_port
        )
        record = sim.take_send_slot

        def recording(chat: SimChat) -> None:
            record(chat)  # raises 429 when over the limit: only accepted sends are kept
            world.sends.append((chat.id, clock.now()))

        sim.take_send_slot = recording  # type: ignore[method-assign]
        yield world
    finally:
        await bot.session.close()
        controller.stop()
        await sim.stop()


def ref_of(row: aiosqlite.Row) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(row["ref"] or "{}")
    return loaded
