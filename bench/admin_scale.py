"""Admin at scale: `/list`, `/status` and `GET /api/instances?page=…` with a large fleet.

The same handlers are timed against a database of 100 instances and 1,000 events and
one of 10,000 instances and 100,000 events, in one run. The bot commands go through
the real aiogram dispatcher (`feed_update`, the reply sent to the Telegram
simulator); the API through the real aiohttp app on loopback. The p99 at the large
scale over the p99 at the small one, per handler, must stay ≤ 2: the cost of a
command does not grow with the fleet.

    .venv/bin/python -m bench.admin_scale
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Chat, Message, Update, User
from aiohttp import web

from bench._fleet import instance_id, populate
from bench._support import percentile, verdict
from bot.context import BotContext
from bot.dispatcher import build_dispatcher
from core.billing import Prices
from core.clock import SystemClock
from core.login_tokens import LoginTokens
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.telegram import TelegramSim
from tests.bot.conftest import ADMIN, BOT_NAME, OPS_CHAT, TOKEN, FakeGateway
from tests.conftest import ADMIN_KEY, base_settings
from webhooks.context import WebContext
from webhooks.server import create_app

NAME = "admin_scale"
SCALES = ((100, 1_000), (10_000, 100_000))
REPEAT = 300
WARMUP = 20
Timed = Callable[[], Awaitable[None]]


class Harness:
    """The bot's dispatcher and the web app over one database."""

    def __init__(self, sim: TelegramSim, settings: Settings, db: Database) -> None:
        clock = SystemClock()
        core = build_core(db, clock, timings=PolicyTimings(), lifetime_cap=100,
                          prices=Prices(settings.paddle_price_monthly,
                                        settings.paddle_price_lifetime))  # fmt: skip
        self.ctx = BotContext(settings, core, LoginTokens(db, clock, timedelta(days=7)),
                              FakeGateway())  # fmt: skip
        self.dispatcher = build_dispatcher(self.ctx)
        api = TelegramAPIServer.from_base(sim.url)
        self.bot = Bot(TOKEN, session=AiohttpSession(api=api))
        self.web = WebContext(settings, core)
        self.runner = web.AppRunner(create_app(self.web), access_log=None)
        self.admin = User(id=ADMIN, is_bot=False, first_name="Ada")
        self.chat = Chat(id=OPS_CHAT, type="supergroup", title="Ops")
        self.update_id = 0
        self.http: aiohttp.ClientSession | None = None
        self.base = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession(headers={"X-API-Key": ADMIN_KEY})

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.runner.cleanup()
        await self.bot.session.close()

    async def command(self, text: str) -> None:
        self.update_id += 1
        message = Message(message_id=self.update_id, date=datetime.now(UTC), chat=self.chat,
                          from_user=self.admin, text=text)  # fmt: skip
        update = Update(update_id=self.update_id, message=message)
        await self.dispatcher.feed_update(self.bot, update)

    async def get(self, path: str) -> None:
        assert self.http is not None
        async with self.http.get(self.base + path) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")


def cases(h: Harness, instances: int) -> dict[str, Timed]:
    last = -(-instances // 50)
    newest = instance_id(instances - 1)
    return {
        "/list": lambda: h.command("/list"),
        "/list active": lambda: h.command("/list active"),
        "/status <instance>": lambda: h.command(f"/status {newest}"),
        "/status <email>": lambda: h.command(f"/status c{instances // 2}@example.com"),
        "GET /api/instances?page=1": lambda: h.get("/api/instances?page=1"),
        "GET /api/instances?page=last": lambda: h.get(f"/api/instances?page={last}"),
        "GET /api/instances?status=active": lambda: h.get("/api/instances?status=active&page=2"),
    }


async def harness_for(
    sim: TelegramSim, workdir: Path, instances: int, events: int
) -> tuple[Harness, Database]:
    path = workdir / f"admin-{instances}.db"
    await populate(path, instances, events)
    settings = Settings(_env_file=None, **(base_settings(workdir) | {
        "database_path": str(path), "telegram_api_base": sim.url,
        "admin_rate_limit_per_s": "1000000",
    }))  # fmt: skip
    db = await Database.open(path)
    harness = Harness(sim, settings, db)
    await harness.start()
    return harness, db


async def measure(workdir: Path) -> bool:
    sim = TelegramSim(bot_token=TOKEN, bot_username=BOT_NAME, time_scale=0.0)
    await sim.start()
    admin = sim.add_user("Ada", user_id=ADMIN, username="ada")
    sim.add_group("Ops", chat_id=OPS_CHAT, admins=[admin], owner=admin, bot_is_admin=True)
    made = [await harness_for(sim, workdir, n, e) for n, e in SCALES]
    results: list[dict[str, float]] = [{}, {}]
    try:
        # Both fleets side by side, runs alternated: the machine's noise hits both alike.
        few, many = (cases(h, n) for (h, _), (n, _) in zip(made, SCALES, strict=True))
        for name in few:
            times: list[list[float]] = [[], []]
            for i in range(WARMUP + REPEAT):
                for scale, run in enumerate((few[name], many[name])):
                    began = time.perf_counter()
                    await run()
                    if i >= WARMUP:
                        times[scale].append(time.perf_counter() - began)
            for scale in (0, 1):
                results[scale][name] = percentile(times[scale], 0.99)
    finally:
        for harness, db in made:
            await harness.stop()
            await db.close()
        await sim.stop()
    (small_n, small_e), (large_n, large_e) = SCALES
    print(f"handler p99 over {REPEAT} runs each, ms: {small_n} instances/{small_e} events → "
          f"{large_n} instances/{large_e} events")  # fmt: skip
    ratios = []
    for name in results[0]:
        small, large = results[0][name], results[1][name]
        ratios.append(large / small)
        print(f"  {name:32} {small * 1e3:7.2f} → {large * 1e3:7.2f}  ratio {large / small:.2f}")
    return verdict(NAME, max(ratios), 2.0)


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        ok = asyncio.run(measure(Path(workdir)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
