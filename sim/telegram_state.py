"""The simulated Telegram world as the bot sees it: lookups, refusals, queue, shapes.

Everything lives in memory and belongs to one bot token. The Bot API methods
(`sim.telegram_methods`) act on it as the bot; `sim.telegram_control` adds what the
people around the bot do, which is what tests and the demo drive.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from sim.telegram_model import (
    ADMIN_RIGHTS,
    GROUP_FLOOD,
    PRIVATE_FLOOD,
    ApiCall,
    SimCallbackQuery,
    SimChat,
    SimDocument,
    SimError,
    SimMessage,
    SimUser,
)
from sim.telegram_protocol import TelegramApiError, bad_request, forbidden, too_many_requests

JsonDict = dict[str, Any]
T = TypeVar("T")


class TelegramWorld:
    """State shared by the Bot API side and the control side of the simulator."""

    def __init__(
        self,
        bot_token: str,
        bot_username: str = "openclaw_hosted_bot",
        *,
        bot_name: str = "OpenClaw Hosted",
        time_scale: float = 1.0,
        privacy_mode: bool = True,
    ) -> None:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", bot_token):
            raise SimError(f"bot token {bot_token!r} is not <digits>:<secret>")
        self.bot_token = bot_token
        self.bot = SimUser(
            int(bot_token.split(":")[0]), bot_name, bot_username, language_code=None, is_bot=True
        )
        self.time_scale = time_scale
        # Privacy mode (Telegram's default): in groups the bot sees commands, replies to
        # itself and mentions, everything only where it is an administrator.
        self.privacy_mode = privacy_mode
        self.latency_s = 0.0
        self.monotonic: Callable[[], float] = time.monotonic
        self.users: dict[int, SimUser] = {self.bot.id: self.bot}
        self.chats: dict[int, SimChat] = {}
        self.updates: list[tuple[int, str, JsonDict]] = []
        self.allowed_updates: list[str] | None = None
        self.webhook: JsonDict | None = None
        self.commands: dict[str, list[JsonDict]] = {}
        self.callbacks: dict[str, SimCallbackQuery] = {}
        self.files: dict[str, SimDocument] = {}
        # Every Bot API call, newest last; bounded so a long demo does not grow forever.
        self.calls: deque[ApiCall] = deque(maxlen=10_000)
        self.method_faults: dict[str, deque[TelegramApiError]] = {}
        self.chaos_rate = 0.0  # a fraction of calls answered 429 or 5xx (set_chaos)
        self.chaos_rng = random.Random()
        self.chaos_injected = 0
        self._update_ids = itertools.count(800_000_001)
        self._user_ids = itertools.count(100_000_001)
        self._group_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self.closed = False  # set by stop(): waits end instead of hanging
        self._changed = asyncio.Event()

    # -- waiting -------------------------------------------------------------------

    def notify(self) -> None:
        """Wake everyone waiting for a change (long polls, wait_until)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, probe: Callable[[], T | None], timeout_s: float = 5.0) -> T:
        """Re-run `probe` after every change until it returns something other than None."""
        try:
            async with asyncio.timeout(timeout_s):
                while (found := probe()) is None:
                    if self.closed:
                        raise SimError("the simulator was stopped")
                    await self._changed.wait()
                return found
        except TimeoutError:
            raise TimeoutError(f"nothing matched within {timeout_s} s") from None

    async def next_bot_message(self, chat_id: int, timeout_s: float = 5.0) -> SimMessage:
        """The bot's next message in a chat, in order; each is returned once."""
        chat = self.chat(chat_id)

        def probe() -> SimMessage | None:
            for index in range(chat.bot_cursor, len(chat.messages)):
                message = chat.messages[index]
                if message.from_bot and not message.service:
                    chat.bot_cursor = index + 1
                    return message
            return None

        try:
            return await self.wait_until(probe, timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"the bot sent nothing to chat {chat_id} within {timeout_s} s"
            ) from None

    async def wait_callback_answer(self, query_id: str, timeout_s: float = 5.0) -> JsonDict:
        query = self.callbacks[query_id]
        return await self.wait_until(lambda: query.answer, timeout_s)

    def user(self, user: int | SimUser) -> SimUser:
        uid = user.id if isinstance(user, SimUser) else user
        if uid not in self.users:
            raise SimError(f"no user {uid}; add_user() first")
        return self.users[uid]

    def chat(self, chat_id: int) -> SimChat:
        if chat_id not in self.chats:
            raise SimError(f"no chat {chat_id}")
        return self.chats[chat_id]

    def private_chat(self, user: int | SimUser) -> SimChat:
        """The user's private chat with the bot, opened as pressing Start would."""
        person = self.user(user)
        if person.id not in self.chats:
            self.chats[person.id] = SimChat(person.id, "private", members={person.id: "member"})
        return self.chats[person.id]

    def transcript(self, chat_id: int) -> list[SimMessage]:
        return list(self.chat(chat_id).messages)

    def bot_messages(self, chat_id: int) -> list[SimMessage]:
        return [m for m in self.chat(chat_id).messages if m.from_bot and not m.service]

    def message(self, chat_id: int, message_id: int) -> SimMessage:
        chat = self.chat(chat_id)
        if not 1 <= message_id <= len(chat.messages):
            raise SimError(f"no message {message_id} in chat {chat_id}")
        return chat.messages[message_id - 1]

    # -- used by the Bot API methods ---------------------------------------------------

    def chat_for_bot(self, ref: Any) -> SimChat:
        """The chat a bot call targets, after every reason Telegram has to refuse it."""
        chat = self._resolve(ref)
        if chat.migrated_to is not None:
            raise bad_request(
                "group chat was upgraded to a supergroup chat", migrate_to_chat_id=chat.migrated_to
            )
        if chat.type == "private":
            if chat.bot_status == "kicked":
                raise forbidden("bot was blocked by the user")
        elif chat.bot_status == "kicked":
            raise forbidden(f"bot was kicked from the {chat.kind} chat")
        elif chat.bot_status == "left":
            raise forbidden(f"bot is not a member of the {chat.kind} chat")
        return chat

    def _resolve(self, ref: Any) -> SimChat:
        if isinstance(ref, str) and ref.startswith("@"):
            for chat in self.chats.values():
                if chat.username and chat.username.lower() == ref[1:].lower():
                    return chat
            raise bad_request("chat not found")
        try:
            chat_id = int(ref)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        if chat_id in self.chats:
            return self.chats[chat_id]
        if chat_id in self.users and chat_id != self.bot.id:
            raise forbidden("bot can't initiate conversation with a user")
        raise bad_request("chat not found")

    def take_send_slot(self, chat: SimChat) -> None:
        """Count a bot message against the chat's flood limit, or refuse it with 429."""
        rule = chat.flood_rule or (PRIVATE_FLOOD if chat.type == "private" else GROUP_FLOOD)
        window = rule.window_s * self.time_scale
        now = self.monotonic()
        while chat.bot_sends and chat.bot_sends[0] <= now - window:
            chat.bot_sends.popleft()
        if len(chat.bot_sends) >= rule.limit:
            # retry_after is whole seconds, so a scaled-down window is always over by then.
            raise too_many_requests(max(1, math.ceil(chat.bot_sends[0] + window - now)))
        chat.bot_sends.append(now)

    def add_bot_message(self, chat: SimChat, **fields: Any) -> SimMessage:
        message = self._add_message(chat, self.bot.id, **fields)
        self.notify()
        return message

    def enqueue(self, kind: str, payload: JsonDict) -> None:
        self.updates.append((next(self._update_ids), kind, payload))

    # -- internals -----------------------------------------------------------------

    def _add_message(
        self, chat: SimChat, sender_id: int, *, reply_to: int | None = None, **fields: Any
    ) -> SimMessage:
        if reply_to is not None:
            self.message(chat.id, reply_to)
        message = SimMessage(
            chat_id=chat.id,
            message_id=len(chat.messages) + 1,
            sender_id=sender_id,
            from_bot=sender_id == self.bot.id,
            date=int(time.time()),
            reply_to_message_id=reply_to,
            **fields,
        )
        chat.messages.append(message)
        return message

    def set_bot_status(self, chat: SimChat, status: str, actor: int) -> None:
        old = self.member_json(chat, self.bot.id)
        chat.bot_status = status
        self.enqueue(
            "my_chat_member",
            {
                "chat": self.chat_json(chat),
                "from": self.users[actor].to_api(),
                "date": int(time.time()),
                "old_chat_member": old,
                "new_chat_member": self.member_json(chat, self.bot.id),
            },
        )
        self.notify()

    # -- Telegram's object shapes ------------------------------------------------------

    def chat_json(self, chat: SimChat) -> JsonDict:
        data: JsonDict = {"id": chat.id, "type": chat.type}
        if chat.type == "private":
            data.update(
                {
                    k: v
                    for k, v in self.users[chat.id].to_api().items()
                    if k in ("first_name", "last_name", "username")
                }
            )
        else:
            data["title"] = chat.title
            if chat.username:
                data["username"] = chat.username
        return data

    def message_json(self, message: SimMessage, *, with_reply: bool = True) -> JsonDict:
        chat = self.chats[message.chat_id]
        data: JsonDict = {
            "message_id": message.message_id,
            "from": self.users[message.sender_id].to_api(),
            "chat": self.chat_json(chat),
            "date": message.date,
        }
        if message.reply_to_message_id is not None and with_reply:
            replied = self.message(chat.id, message.reply_to_message_id)
            data["reply_to_message"] = self.message_json(replied, with_reply=False)
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        for key in ("text", "caption"):
            if (value := getattr(message, key)) is not None:
                data[key] = value
        if message.entities:
            data["entities"] = message.entities
        if message.caption_entities:
            data["caption_entities"] = message.caption_entities
        if message.document is not None:
            data["document"] = message.document.to_api()
        if message.inline_keyboard is not None:
            data["reply_markup"] = message.inline_keyboard
        data.update(message.service)
        return data

    def member_json(self, chat: SimChat, user_id: int) -> JsonDict:
        status = chat.bot_status if user_id == self.bot.id else chat.members.get(user_id, "left")
        data: JsonDict = {"status": status, "user": self.users[user_id].to_api()}
        if status == "creator":
            data["is_anonymous"] = False
        elif status == "administrator":
            data.update({"can_be_edited": False, "is_anonymous": False})
            data.update(dict.fromkeys(ADMIN_RIGHTS, True))
        elif status == "kicked":
            data["until_date"] = 0
        return data
