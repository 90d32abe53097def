"""Telegram Bot API simulator on loopback, for the real aiogram.

    sim = TelegramSim(bot_token="123:ABC", bot_username="openclaw_hosted_bot", time_scale=0.01)
    await sim.start()                       # sim.url -> TelegramAPIServer.from_base(sim.url)
    admin = sim.add_user("Ada", username="ada")
    ops = sim.add_group("Ops", admins=[admin])
    sim.send_command(ops.id, admin, "list")
    reply = await sim.next_bot_message(ops.id)
    await sim.stop()

The Bot API lives under /bot<token>/<method>, files under /file/bot<token>/<path>,
and the control API for tests and the demo under /_sim/ (see `_control_routes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from typing import Any

import aiohttp
from aiohttp import web

from sim.telegram_control import TelegramControl
from sim.telegram_methods import DEFAULT_ALLOWED, METHODS
from sim.telegram_model import ApiCall, SimError
from sim.telegram_protocol import (
    MAX_UPLOAD,
    Params,
    TelegramApiError,
    Upload,
    conflict,
    not_found,
    read_params,
    unauthorized,
)

JsonDict = dict[str, Any]

TERMINATED = (
    "terminated by other getUpdates request; make sure that only one bot instance is running"
)
WEBHOOK_ACTIVE = (
    "can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
    "webhook first"
)


class _PendingPoll:
    """A getUpdates request that is waiting; a newer request terminates it with 409."""

    def __init__(self) -> None:
        self.terminated = False


class TelegramSim(TelegramControl):
    """The simulated Bot API server; control methods come from TelegramControl."""

    def __init__(
        self,
        bot_token: str,
        bot_username: str = "openclaw_hosted_bot",
        *,
        bot_name: str = "OpenClaw Hosted",
        time_scale: float = 1.0,
        privacy_mode: bool = True,
    ) -> None:
        super().__init__(
            bot_token,
            bot_username,
            bot_name=bot_name,
            time_scale=time_scale,
            privacy_mode=privacy_mode,
        )
        self.url = ""
        self.conflicts = 0  # getUpdates requests terminated by a newer one
        self.webhook_errors: list[str] = []
        self._runner: web.AppRunner | None = None
        self._poll: _PendingPoll | None = None
        self._webhook_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        host = "127.0.0.1" if host == "localhost" else host
        if not ipaddress.ip_address(host).is_loopback:
            raise SimError(f"the simulator listens on loopback only, not {host}")
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._bot_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._control_routes(app)
        # Cancelling the handler of a client that went away frees its long poll at once.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0][1]
        self.url = f"http://{host}:{bound}"
        self.closed = False
        self._webhook_task = asyncio.create_task(self._deliver_webhooks(), name="tg-sim-webhook")
        return self.url

    async def stop(self) -> None:
        """Release pending long polls and waits, then close the listener."""
        self.closed = True
        self.notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TelegramSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def polling(self) -> bool:
        """Whether a getUpdates long poll is waiting right now."""
        return self._poll is not None

    # -- the Bot API -----------------------------------------------------------------

    async def _bot_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = ApiCall(method, {})
        try:
            if request.match_info["token"] != self.bot_token:
                raise unauthorized()
            name = method.lower()
            if name != "getupdates" and name not in METHODS:
                raise not_found()
            params = await read_params(request)
            call.params = {
                k: v.filename if isinstance(v, Upload) else v for k, v in params.values.items()
            }
            self.calls.append(call)
            if fault := self.method_faults.get(name):
                raise fault.popleft()
            if chaos := self.chaos_fault():
                raise chaos
            if self.latency_s:
                await asyncio.sleep(self.latency_s * self.time_scale)
            if name == "getupdates":
                result: Any = await self._get_updates(params)
            else:
                result = METHODS[name](self, params)
        except TelegramApiError as error:
            call.error_code = error.error_code
            return web.json_response(error.to_api(), status=error.error_code)
        return web.json_response({"ok": True, "result": result})

    async def _get_updates(self, p: Params) -> list[JsonDict]:
        if self.webhook is not None:
            raise conflict(WEBHOOK_ACTIVE)
        offset = p.integer("offset")
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.integer("timeout") or 0, 0)
        allowed = p.json("allowed_updates")
        if allowed is not None:
            self.allowed_updates = list(allowed) or None
        self._confirm(offset)
        if self._poll is not None:
            self._poll.terminated = True
            self.conflicts += 1
            self.notify()
        poll = self._poll = _PendingPoll()
        self.notify()  # tests wait for `polling` to become true
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                if poll.terminated:
                    raise conflict(TERMINATED)
                batch = self._deliverable(limit)
                remaining = deadline - loop.time()
                if batch or self.closed or remaining <= 0:
                    return batch
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
        finally:
            if self._poll is poll:
                self._poll = None

    def _confirm(self, offset: int | None) -> None:
        """An offset confirms every earlier update; a negative one keeps only the last few."""
        if offset is None:
            return
        if offset < 0:
            self.updates = self.updates[offset:]
        else:
            self.updates = [u for u in self.updates if u[0] >= offset]

    def _deliverable(self, limit: int) -> list[JsonDict]:
        # Updates of kinds the bot did not ask for are never delivered, so drop them.
        allowed = set(self.allowed_updates or DEFAULT_ALLOWED)
        self.updates = [u for u in self.updates if u[1] in allowed]
        return [{"update_id": uid, kind: payload} for uid, kind, payload in self.updates[:limit]]

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.bot_token:
            return web.json_response(unauthorized().to_api(), status=401)
        for document in self.files.values():
            if (
                request.match_info["path"]
                == f"documents/{document.file_unique_id}_{document.file_name}"
            ):
                return web.Response(body=document.content, content_type=document.mime_type)
        return web.json_response(not_found().to_api(), status=404)

    async def _deliver_webhooks(self) -> None:
        """Post updates to the webhook one at a time, keeping each until it gets a 2xx."""
        # Telegram gives up on a webhook request after about a minute and retries later.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            while True:
                hook = self.webhook
                batch = self._deliverable(1) if hook is not None else []
                if hook is None or not batch:
                    await self._changed.wait()
                    continue
                headers = (
                    {"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"]}
                    if hook["secret_token"]
                    else {}
                )
                try:
                    async with http.post(hook["url"], json=batch[0], headers=headers) as resp:
                        delivered = 200 <= resp.status < 300
                        reply = await resp.text() if delivered else ""
                        if not delivered:
                            self.webhook_errors.append(
                                f"Wrong response from the webhook: {resp.status}"
                            )
                except (aiohttp.ClientError, TimeoutError) as error:
                    delivered, reply = False, ""
                    self.webhook_errors.append(f"Connection failed: {error}")
                if delivered:
                    self.updates = [u for u in self.updates if u[0] != batch[0]["update_id"]]
                    self.notify()
                    self._run_webhook_reply(reply)
                else:
                    await asyncio.sleep(max(1.0 * self.time_scale, 0.01))

    def _run_webhook_reply(self, body: str) -> None:
        # A webhook may answer with a method call in its body; Telegram executes it.
        with contextlib.suppress(ValueError, TelegramApiError):
            payload = json.loads(body) if body else None
            if isinstance(payload, dict) and str(payload.get("method", "")).lower() in METHODS:
                METHODS[str(payload.pop("method")).lower()](self, Params(payload))

    # -- the control API over HTTP -------------------------------------------------------

    def _control_routes(self, app: web.Application) -> None:
        routes = [
            web.get("/_sim/state", self._c_state),
            web.post("/_sim/users", self._c_add_user),
            web.post("/_sim/chats", self._c_add_group),
            web.post("/_sim/chats/{chat_id}/messages", self._c_send),
            web.post("/_sim/chats/{chat_id}/messages/{message_id}/press", self._c_press),
            web.get("/_sim/chats/{chat_id}/transcript", self._c_transcript),
            web.get("/_sim/chats/{chat_id}/next_bot_message", self._c_next),
            web.post("/_sim/chats/{chat_id}/faults", self._c_chat_faults),
            web.post("/_sim/methods/{method}/fail", self._c_fail),
            web.get("/_sim/callbacks/{query_id}", self._c_callback),
            web.post("/_sim/settings", self._c_settings),
        ]
        for route in routes:
            route.register(app.router)
        app.middlewares.append(_control_errors)

    async def _c_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "url": self.url,
                "bot": self.bot.to_api(),
                "users": [u.to_api() for u in self.users.values()],
                "chats": [
                    {
                        **self.chat_json(c),
                        "members": {str(k): v for k, v in c.members.items()},
                        "bot_status": c.bot_status,
                        "migrated_to": c.migrated_to,
                    }
                    for c in self.chats.values()
                ],
                "pending_updates": len(self.updates),
                "webhook": self.webhook,
                "commands": self.commands,
            }
        )

    async def _c_add_user(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = self.add_user(
            body["first_name"],
            user_id=body.get("id"),
            username=body.get("username"),
            last_name=body.get("last_name"),
        )
        return web.json_response(user.to_api())

    async def _c_add_group(self, request: web.Request) -> web.Response:
        body = await request.json()
        chat = self.add_group(
            body["title"],
            members=body.get("members", []),
            admins=body.get("admins", []),
            owner=body.get("owner"),
            chat_id=body.get("id"),
            supergroup=body.get("type", "supergroup") == "supergroup",
            username=body.get("username"),
            bot_is_admin=bool(body.get("bot_is_admin", False)),
        )
        return web.json_response(self.chat_json(chat))

    async def _c_send(self, request: web.Request) -> web.Response:
        body = await request.json()
        message = self.send_text(
            int(request.match_info["chat_id"]),
            int(body["user_id"]),
            str(body["text"]),
            reply_to=body.get("reply_to_message_id"),
        )
        return web.json_response(self.transcript_entry(message))

    async def _c_press(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = self.press_button(
            int(request.match_info["chat_id"]),
            int(request.match_info["message_id"]),
            int(body["user_id"]),
            data=body.get("callback_data"),
            text=body.get("text"),
        )
        return web.json_response({"callback_query_id": query.id, "data": query.data})

    async def _c_transcript(self, request: web.Request) -> web.Response:
        messages = self.transcript(int(request.match_info["chat_id"]))
        return web.json_response([self.transcript_entry(m) for m in messages])

    async def _c_next(self, request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "5"))
        try:
            message = await self.next_bot_message(int(request.match_info["chat_id"]), timeout)
        except TimeoutError as error:
            return web.json_response({"error": str(error)}, status=408)
        return web.json_response(self.transcript_entry(message))

    async def _c_chat_faults(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        body = await request.json()
        if "flood_limit" in body:
            self.set_flood_limit(
                chat_id, int(body["flood_limit"]), float(body.get("flood_window_s", 60))
            )
        if body.get("kicked") is True:
            self.kick_bot(chat_id)
        elif body.get("kicked") is False:
            self.restore_bot(chat_id)
        answer: JsonDict = {"chat_id": chat_id}
        if body.get("migrate"):
            answer["migrate_to_chat_id"] = self.migrate_group(chat_id)
        return web.json_response(answer)

    async def _c_fail(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.fail_next(
            request.match_info["method"],
            int(body.get("times", 1)),
            error_code=int(body.get("error_code", 500)),
            description=str(body.get("description", "Internal Server Error")),
            retry_after=body.get("retry_after"),
        )
        return web.json_response({"ok": True})

    async def _c_callback(self, request: web.Request) -> web.Response:
        query = self.callbacks[request.match_info["query_id"]]
        return web.json_response({"id": query.id, "data": query.data, "answer": query.answer})

    async def _c_settings(self, request: web.Request) -> web.Response:
        body = await request.json()
        for key in ("latency_s", "time_scale"):
            if key in body:
                setattr(self, key, float(body[key]))
        if "privacy_mode" in body:
            self.privacy_mode = bool(body["privacy_mode"])
        settings = ("latency_s", "time_scale", "privacy_mode")
        return web.json_response({k: getattr(self, k) for k in settings})


@web.middleware
async def _control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    # Misuse of the control API is a test bug: answer it plainly instead of a 500.
    try:
        response: web.StreamResponse = await handler(request)
    except (SimError, ValueError, KeyError, TypeError) as error:
        if not request.path.startswith("/_sim/"):
            raise
        status = 404 if isinstance(error, KeyError) else 400
        return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=status)
    return response
