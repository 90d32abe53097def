"""`check-config`'s online checks of Telegram and Paddle, and what all online checks share.

Telegram: `getMe` (the token), `getChat` and `getChatMember` on `OPS_CHAT_ID` (the bot
is in the group and may write there; a group upgraded to a supergroup answers
`migrate_to_chat_id`), and each of `ADMIN_USER_IDS` is in the group. Admin rights are
not required: the bot only reads commands, presses of its buttons and service
messages, all of which reach a member bot in privacy mode (Telegram's default).

Paddle: `GET /customers?per_page=1`, the permission the service uses (customer
emails), and whether the key's environment (`pdl_sdbx_`/`pdl_live_`) matches
`PADDLE_API_BASE` and `PADDLE_ENVIRONMENT`.

Hetzner's checks are in `app.preflight_hetzner`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from core.settings import Settings

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One line of the table: passed (True), failed (False) or skipped (None)."""

    ok: bool | None
    what: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"✓ {self.what}"
        if self.ok is None:
            return f"– {self.what}" + (f" — to enable: {self.fix}" if self.fix else "")
        return f"✗ {self.what} — fix: {self.fix}"


class Unreachable(Exception):
    """No HTTP answer: refused, timed out, or broken off."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the JSON body, or None
    headers: Mapping[str, str]

    def field(self, *path: str) -> Any:
        value = self.body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value


class Http:
    """GET with a deadline; the answer whatever its status, Unreachable when none."""

    def __init__(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        self.session = session
        self.timeout_s = timeout_s

    async def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.session.get(
                    url, headers=headers, params=params, allow_redirects=False
                ) as response:
                    text = await response.text()
                    status, answer_headers = response.status, response.headers.copy()
        except TimeoutError:
            raise Unreachable(f"no answer within {self.timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError, ValueError) as error:
            # The caller redacts: a URL in the message may hold the Telegram token.
            raise Unreachable(str(error)[:200] or type(error).__name__) from None
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return Answer(status, body, answer_headers)


def again(setting: str) -> str:
    return f"run check-config again; if it keeps failing, check {setting}"


# -- Telegram ------------------------------------------------------------------------

BOTFATHER_FIX = (
    "copy your bot's token from @BotFather (/mybots → your bot → API Token) into TELEGRAM_BOT_TOKEN"
)
IN_CHAT = ("creator", "administrator", "member")


def _tg_error(answer: Answer) -> str:
    return str(answer.field("description") or f"HTTP {answer.status}")


async def telegram_rows(http: Http, settings: Settings) -> list[Row]:
    base = f"{settings.telegram_api_base}/bot{settings.telegram_bot_token.get_secret_value()}/"
    try:
        me = await http.get(base + "getMe")
    except Unreachable as error:
        return [
            Row(
                False,
                f"Telegram: cannot reach {settings.telegram_api_base} ({error})",
                "check TELEGRAM_API_BASE (https://api.telegram.org) and that this machine "
                "reaches it",
            )
        ]
    if me.status in (401, 404):
        return [Row(False, f"Telegram: bot token rejected ({_tg_error(me)})", BOTFATHER_FIX)]
    bot = me.field("result")
    if me.status != 200 or not isinstance(bot, dict) or "id" not in bot:
        return [Row(False, f"Telegram: getMe failed ({_tg_error(me)})", again("TELEGRAM_API_BASE"))]
    rows = [Row(True, f"Telegram: bot @{bot.get('username')} (id {bot['id']}), token accepted")]
    chat_row = await _ops_chat_row(http, base, settings.ops_chat_id, bot)
    rows.append(chat_row)
    if chat_row.ok:
        rows.append(await _admins_row(http, base, settings))
    return rows


async def _ops_chat_row(http: Http, base: str, chat_id: int, bot: JsonDict) -> Row:
    what, name = f"ops chat {chat_id}", f"@{bot.get('username')}"
    try:
        chat = await http.get(base + "getChat", params={"chat_id": str(chat_id)})
    except Unreachable as error:
        return Row(False, f"{what}: getChat got {error}", again("TELEGRAM_API_BASE"))
    if migrated := chat.field("parameters", "migrate_to_chat_id"):
        return Row(
            False,
            f"{what}: the group was upgraded to a supergroup, whose id is {migrated}",
            f"set OPS_CHAT_ID={migrated}",
        )
    if chat.status == 403:
        return Row(False, f"{what}: {_tg_error(chat)}", f"add {name} to the operators' group again")
    if chat.status == 400:
        return Row(
            False,
            f"{what}: {_tg_error(chat)}",
            f"add {name} to the operators' group and set OPS_CHAT_ID to that group's id "
            "(a supergroup's starts with -100)",
        )
    info = chat.field("result")
    if chat.status != 200 or not isinstance(info, dict):
        return Row(False, f"{what}: getChat failed ({_tg_error(chat)})", again("OPS_CHAT_ID"))
    if info.get("type") not in ("group", "supergroup"):
        return Row(
            False,
            f"{what}: a {info.get('type')} chat, not a group",
            f"create a group for the operators, add {name}, and set OPS_CHAT_ID to its id",
        )
    what = f'{what} "{info.get("title", "")}"'
    params = {"chat_id": str(chat_id), "user_id": str(bot["id"])}
    try:
        member = await http.get(base + "getChatMember", params=params)
    except Unreachable as error:
        return Row(False, f"{what}: getChatMember got {error}", again("TELEGRAM_API_BASE"))
    found = member.field("result")
    if member.status != 200 or not isinstance(found, dict):
        return Row(
            False, f"{what}: getChatMember failed ({_tg_error(member)})", again("OPS_CHAT_ID")
        )
    status = found.get("status")
    if status == "restricted" and not found.get("can_send_messages", False):
        return Row(
            False,
            f"{what}: the bot may not send messages there",
            f"lift {name}'s restriction in the group's permissions, or make it an administrator",
        )
    if status not in (*IN_CHAT, "restricted"):
        return Row(False, f"{what}: the bot is not a member ({status})", f"add {name} to the group")
    if status in ("administrator", "creator"):
        return Row(True, f"{what}: the bot is an administrator")
    privacy = "" if bot.get("can_read_all_group_messages") else "privacy mode on: "
    return Row(
        True, f"{what}: the bot is a member ({privacy}it receives commands; no admin rights needed)"
    )


async def _admins_row(http: Http, base: str, settings: Settings) -> Row:
    chat_id = str(settings.ops_chat_id)

    async def status(user_id: int) -> str:
        try:
            answer = await http.get(
                base + "getChatMember", params={"chat_id": chat_id, "user_id": str(user_id)}
            )
        except Unreachable as error:
            return str(error)
        member = answer.field("result")
        if not isinstance(member, dict):
            return _tg_error(answer)
        if member.get("status") == "restricted" and member.get("is_member"):
            return "member"
        return str(member.get("status"))

    ids = settings.admin_user_ids
    statuses = await asyncio.gather(*(status(uid) for uid in ids))
    missing = [f"{uid} ({s})" for uid, s in zip(ids, statuses, strict=True) if s not in IN_CHAT]
    if missing:
        return Row(
            False,
            f"ADMIN_USER_IDS not in the ops chat: {', '.join(missing)}",
            "add them to the operators' group, or correct ADMIN_USER_IDS (numeric user ids, "
            "not @usernames)",
        )
    return Row(True, f"ADMIN_USER_IDS in the ops chat: {', '.join(map(str, ids))}")


# -- Paddle --------------------------------------------------------------------------

PADDLE_APIS = {"production": "https://api.paddle.com", "sandbox": "https://sandbox-api.paddle.com"}
KEY_PREFIXES = {"pdl_live_": "production", "pdl_sdbx_": "sandbox"}


def _environment_of(url: str) -> str | None:
    return next((env for env, api in PADDLE_APIS.items() if urlsplit(api).netloc == url), None)


async def paddle_rows(http: Http, settings: Settings) -> list[Row]:
    base, key = settings.paddle_api_base, settings.paddle_api_key.get_secret_value()
    api_env = _environment_of(urlsplit(base).netloc)
    key_env = next((env for prefix, env in KEY_PREFIXES.items() if key.startswith(prefix)), None)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        answer = await http.get(f"{base}/customers", headers=auth, params={"per_page": "1"})
    except Unreachable as error:
        return [
            Row(
                False,
                f"Paddle: cannot reach {base} ({error})",
                f"check PADDLE_API_BASE ({PADDLE_APIS['production']}, or "
                f"{PADDLE_APIS['sandbox']} for sandbox) and that this machine reaches it",
            )
        ]
    code, detail = answer.field("error", "code"), answer.field("error", "detail")
    reason = f"{code}: {detail}" if code else f"HTTP {answer.status}"
    if answer.status in (401, 403):
        fix = (
            f"create an API key with the customer read permission in Paddle (Developer tools "
            f"→ Authentication) for the {api_env or settings.paddle_environment} environment "
            "and put it in PADDLE_API_KEY"
        )
        if key_env and api_env and key_env != api_env:
            fix = (
                f"this is a {key_env} key but PADDLE_API_BASE is the {api_env} API: set "
                f"PADDLE_API_BASE={PADDLE_APIS[key_env]} and PADDLE_ENVIRONMENT={key_env}, or {fix}"
            )
        return [Row(False, f"Paddle: API key rejected ({reason})", fix)]
    if answer.status != 200:
        return [Row(False, f"Paddle: GET /customers failed ({reason})", again("PADDLE_API_BASE"))]
    if api_env and api_env != settings.paddle_environment:
        return [
            Row(
                False,
                f"Paddle: PADDLE_ENVIRONMENT is {settings.paddle_environment} but "
                f"PADDLE_API_BASE is the {api_env} API",
                f"set PADDLE_ENVIRONMENT={api_env} (the storefront's checkout uses it)",
            )
        ]
    return [Row(True, f"Paddle: API key accepted by {base} (customers readable)")]
