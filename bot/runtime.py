"""The bot on the app's loop: long polling in a task, watched.

aiogram's polling loop survives network errors on its own, but a crash of the task
(a bug, a startup failure) would end it silently: a done-callback reports it to the
ops group and starts polling again. A 409 (another process polls with our token)
only gets logged by aiogram, forever; a request middleware on the session sees it and
alerts the ops group, once per hour at most. Alerts go through the outbox
(`notify_ops`), since the outbox sender keeps Telegram's limits.

With TELEGRAM_MODE=webhook, start() sets the webhook (with TELEGRAM_WEBHOOK_SECRET)
instead of polling, and `app/` mounts `add_webhook_route` on the public web app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiogram import Bot, Dispatcher
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramAPIError, TelegramConflictError
from aiogram.methods import GetUpdates, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import BotCommandScopeAllPrivateChats, BotCommandScopeChat
from aiogram.utils.backoff import BackoffConfig
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.admin.help import admin_bot_commands
from bot.context import BotContext
from bot.customer import customer_bot_commands
from bot.dispatcher import build_dispatcher
from bot.ops_chat import ops_chat_id
from core.journal import notify_ops

logger = logging.getLogger(__name__)

CONFLICT_REALERT_S = 3600.0
WEBHOOK_PATH = "/telegram/webhook"
POLLING_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.5, jitter=0.1)


class ConflictWatch(BaseRequestMiddleware):
    """Calls `on_conflict` when Telegram answers getUpdates with 409, then re-raises."""

    def __init__(self, on_conflict: Callable[[], Awaitable[None]]) -> None:
        self.on_conflict = on_conflict

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        try:
            return await make_request(bot, method)
        except TelegramConflictError:
            if isinstance(method, GetUpdates):
                await self.on_conflict()
            raise


class BotRuntime:
    def __init__(
        self,
        ctx: BotContext,
        bot: Bot,
        *,
        dispatcher: Dispatcher | None = None,
        restart_delay_s: float = 5.0,
        polling_backoff: BackoffConfig = POLLING_BACKOFF,
        polling_timeout: int = 10,
    ) -> None:
        self.ctx = ctx
        self.bot = bot
        self.dispatcher = dispatcher or build_dispatcher(ctx)
        self.restart_delay_s = restart_delay_s
        self.polling_backoff = polling_backoff
        self.polling_timeout = polling_timeout
        self.crashes = 0
        self.conflicts = 0
        self._task: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._stopping = False
        self._conflict_alerted_at: float | None = None
        self.dispatcher.startup.register(self._on_startup)
        bot.session.middleware(ConflictWatch(self._on_conflict))

    # -- lifecycle -------------------------------------------------------------------

    @property
    def webhook_mode(self) -> bool:
        return self.ctx.settings.telegram_mode == "webhook"

    def add_webhook_route(self, app: web.Application) -> None:
        """Webhook mode: `app/` mounts POST /telegram/webhook on the public web app (before
        it starts); Telegram's secret-token header is checked, a wrong one gets 401."""
        SimpleRequestHandler(
            self.dispatcher,
            self.bot,
            handle_in_background=False,  # no task outlives the request (and stop())
            secret_token=self._webhook_secret(),
        ).register(app, path=WEBHOOK_PATH)

    async def start(self) -> None:
        """getMe (a wrong token fails here), the command menus, then polling or the webhook."""
        me = await self.bot.get_me()
        self.ctx.bot_username = me.username or ""
        await self._set_commands()
        if self.webhook_mode:
            url = self.ctx.settings.public_base_url.rstrip("/") + WEBHOOK_PATH
            await self.bot.set_webhook(
                url,
                secret_token=self._webhook_secret(),
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            )
            return
        self._start_polling()
        await self._wait_started()

    def _webhook_secret(self) -> str:
        secret = self.ctx.settings.telegram_webhook_secret.get_secret_value()
        if not secret:
            raise RuntimeError("TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_SECRET")
        return secret

    async def stop(self) -> None:
        self._stopping = True
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        task = self._task
        if task is not None and not task.done():
            if self._started.is_set():
                # Cancelling start_polling would leave its inner polling task running.
                with contextlib.suppress(RuntimeError):
                    await self.dispatcher.stop_polling()
            else:
                task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.bot.session.close()

    @property
    def polling(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- polling and its supervision ---------------------------------------------------

    def _start_polling(self) -> None:
        self._started.clear()
        self._task = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,  # the app owns the signals and the loop
                close_bot_session=False,  # stop() closes it, after polling ended
                polling_timeout=self.polling_timeout,
                backoff_config=self.polling_backoff,
            ),
            name="telegram-polling",
        )
        self._task.add_done_callback(self._polling_done)

    async def _wait_started(self) -> None:
        assert self._task is not None
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await started

    async def _on_startup(self) -> None:
        self._started.set()

    def _polling_done(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        logger.error(
            "telegram polling ended unexpectedly (%s); restarting in %.1fs",
            type(error).__name__ if error else "returned",
            self.restart_delay_s,
        )
        self._recovery = asyncio.create_task(self._recover(error), name="telegram-recovery")

    async def _recover(self, error: BaseException | None) -> None:
        self.crashes += 1
        # Only the error's type: its text may hold a request URL, which holds the token.
        cause = type(error).__name__ if error else "it returned"
        await self._alert(
            "bot_polling_crashed",
            f"Telegram polling crashed ({cause}); restarting in {self.restart_delay_s:g}s.",
        )
        await asyncio.sleep(self.restart_delay_s)
        if not self._stopping:
            self._start_polling()

    async def _on_conflict(self) -> None:
        self.conflicts += 1
        now = time.monotonic()
        if self._conflict_alerted_at is not None and now - self._conflict_alerted_at < (
            CONFLICT_REALERT_S
        ):
            return
        self._conflict_alerted_at = now
        logger.error("telegram answered 409: another process is polling with this bot token")
        await self._alert(
            "bot_conflict",
            "Telegram answers 409 Conflict: another process is polling with this bot's token. "
            "Stop the other copy; updates are being lost meanwhile.",
        )

    async def _alert(self, kind: str, body: str) -> None:
        core = self.ctx.core
        try:
            async with core.db.transaction() as conn:
                await notify_ops(conn, core.clock.now(), kind, body)
        except Exception:  # an alert that fails must not kill the watcher
            logger.exception("could not queue the ops alert %s", kind)

    async def _set_commands(self) -> None:
        """The menus; a failure here (bot not in the group yet) must not stop the bot."""
        ops = await ops_chat_id(self.ctx.core.db, self.ctx.settings)
        menus = (
            (admin_bot_commands(), BotCommandScopeChat(chat_id=ops)),
            (customer_bot_commands(), BotCommandScopeAllPrivateChats()),
        )
        for commands, scope in menus:
            try:
                await self.bot.set_my_commands(commands, scope=scope)
            except TelegramAPIError as error:
                logger.warning("setMyCommands for %s failed: %s", scope.type, error.message)
