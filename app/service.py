"""The service: every part started on one event loop, stopped cleanly in reverse."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import ClientSession, web

from app.messaging import Messaging, build_messaging
from app.monitoring import build_monitor
from app.provisioning import Wakeup, build_reconciler
from core.billing import Prices
from core.clock import Clock, SystemClock
from core.liveness import Liveness
from core.policy import PolicyTimings
from core.services import CoreServices, build_core
from core.settings import Settings
from db.connection import Database
from monitor.scheduler import MonitorScheduler
from provisioner.reconciler import Reconciler
from webhooks.context import WebContext
from webhooks.paddle_api import ContactSync, PaddleCustomers
from webhooks.server import create_app

log = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    pass


def acquire_lock(database_path: Path) -> IO[str]:
    """One process per database, so two copies never poll Telegram or provision twice."""
    lock_path = database_path.with_name(database_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(f"another openclaw-hosted is running on {database_path}") from None
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def policy_timings(settings: Settings) -> PolicyTimings:
    return PolicyTimings.from_days(
        settings.past_due_suspend_days, settings.cancel_grace_days, settings.destroy_after_days
    )


@dataclass
class Service:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    url: str = ""
    _lock: IO[str] | None = None
    _db: Database | None = None
    _session: ClientSession | None = None
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reconciler: Reconciler | None = None
    messaging: Messaging | None = None
    monitor: MonitorScheduler | None = None
    bot_username: str = ""
    _web_context: WebContext | None = None

    @property
    def db(self) -> Database:
        assert self._db is not None, "service not started"
        return self._db

    async def start(self) -> None:
        settings = self.settings
        self._lock = acquire_lock(settings.database_path)
        self._db = await Database.open(settings.database_path)
        wakeup = Wakeup()
        core = build_core(
            self._db,
            self.clock,
            timings=policy_timings(settings),
            prices=Prices(settings.paddle_price_monthly, settings.paddle_price_lifetime),
            lifetime_cap=settings.lifetime_cap,
            wake=wakeup,
        )
        recovered = await core.inbox.apply_pending()
        if recovered:
            log.info("applied %d Paddle events left unapplied by the last run", recovered)
        self._session = ClientSession()
        paddle = PaddleCustomers(
            settings.paddle_api_base, settings.paddle_api_key.get_secret_value(), self._session
        )
        contacts = ContactSync(self._db, self.clock, core.customers, paddle)
        self._tasks.append(self._supervise(contacts.run(), "contact sync"))
        self.reconciler = build_reconciler(settings, self._db, self.clock, self._session)
        self._tasks.append(self._supervise(self.reconciler.run(), "reconciler"))
        self.messaging = build_messaging(settings, core, self.reconciler.infra)
        wakeup.targets += [self.reconciler.wake, self.messaging.outbox.wake]
        self.reconciler.infra.records.on_notify = self.messaging.outbox.wake
        self._tasks.append(self._supervise(self.messaging.outbox.run(), "outbox"))
        self._tasks.append(self._supervise(self._start_bot(), "telegram bot"))

        self.monitor = build_monitor(settings, core, self.reconciler.infra, wakeup)
        self.monitor.start()
        liveness = self._liveness(core)

        context = WebContext(
            settings,
            core,
            on_paddle_event=contacts.wake,
            login_tokens=self.messaging.context.login_tokens,
            gateway=self.messaging.context.gateway,
            liveness=liveness,
        )
        context.bot_username = self.bot_username or None  # when the bot was quicker
        self._web_context = context
        web_app = create_app(context)
        if settings.telegram_mode == "webhook":  # Telegram posts updates to us instead
            self.messaging.runtime.add_webhook_route(web_app)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        log.info("serving on %s", self.url)

    async def _start_bot(self) -> None:
        """Start the bot (retrying while Telegram is unreachable), then tell the web face
        its username: the welcome page's t.me deep link needs it."""
        assert self.messaging is not None
        await self.messaging.keep_bot_running()
        self.bot_username = self.messaging.context.bot_username
        if self._web_context is not None:
            self._web_context.bot_username = self.bot_username or None

    def _liveness(self, core: CoreServices) -> Liveness:
        """What GET /healthz reports: the scheduler's jobs, and each long-running task."""
        liveness = Liveness()
        assert self.monitor is not None and self.messaging is not None
        liveness.register("scheduler", self.monitor.liveness)
        tasks = {task.get_name(): task for task in self._tasks}

        def alive(name: str) -> Callable[[], Awaitable[dict[str, Any]]]:
            async def probe() -> dict[str, Any]:
                return {"ok": not tasks[name].done()}

            return probe

        liveness.register("reconciler", alive("reconciler"))
        outbox_alive = alive("outbox")

        async def outbox() -> dict[str, Any]:
            row = await core.db.fetch_one(
                "SELECT count(*) AS n, min(next_attempt_at) AS oldest FROM notifications "
                "WHERE status = 'pending'"
            )
            return await outbox_alive() | {"pending": row["n"] if row else 0}

        liveness.register("outbox", outbox)
        runtime = self.messaging.runtime

        async def bot() -> dict[str, Any]:
            # The operators' only console: not polling (Telegram unreachable, a wrong
            # token, polling crashed and recovering) is worth an uptime alarm.
            started = tasks["telegram bot"].done()
            state = "webhook" if runtime.webhook_mode else "polling" if runtime.polling else ""
            state = state if started else "starting"
            return {"ok": bool(state) and state != "starting", "state": state or "stopped"}

        liveness.register("bot", bot)
        return liveness

    def _supervise(self, coro: object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]

        def report(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.error("%s stopped: %r", name, done.exception())

        task.add_done_callback(report)  # a crashed task must not die silently
        return task

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.monitor is not None:
            self.monitor.shutdown()
        if self.messaging is not None:
            await self.messaging.close()
        if self.reconciler is not None:
            await self.reconciler.stop()
            self.reconciler.infra.hetzner.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
        if self._db is not None:
            await self._db.close()
        if self._lock is not None:
            self._lock.close()
        log.info("stopped")


async def run_until_signalled(service: Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
