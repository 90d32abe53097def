"""What the people around the bot do: join chats, write, press buttons, kick the bot.

These are the simulator's control methods for tests and the demo (the HTTP control
API in `sim.telegram` calls the same ones). Faults are set here too.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Iterable

from sim.telegram_model import FloodRule, SimCallbackQuery, SimChat, SimError, SimMessage, SimUser
from sim.telegram_protocol import TelegramApiError
from sim.telegram_state import JsonDict, TelegramWorld
from sim.telegram_text import command_entities, find_button


class TelegramControl(TelegramWorld):
    """The world plus the control methods that act as users, admins and Telegram itself."""

    # -- people and chats ----------------------------------------------------------

    def add_user(
        self,
        first_name: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "en",
    ) -> SimUser:
        uid = user_id if user_id is not None else next(self._user_ids)
        if uid in self.users:
            raise SimError(f"user {uid} already exists")
        user = SimUser(uid, first_name, username, last_name, language_code)
        self.users[uid] = user
        return user

    def add_group(
        self,
        title: str,
        *,
        members: Iterable[int | SimUser] = (),
        admins: Iterable[int | SimUser] = (),
        owner: int | SimUser | None = None,
        chat_id: int | None = None,
        supergroup: bool = True,
        username: str | None = None,
        bot_is_admin: bool = False,
    ) -> SimChat:
        """A group the bot has been added to; the owner and admins are members too."""
        seq = next(self._group_ids)
        if chat_id is None:
            chat_id = -(1_001_000_000_000 + seq) if supergroup else -(4_000_000_000 + seq)
        if chat_id in self.chats or chat_id >= 0:
            raise SimError(f"chat id {chat_id} is taken or not a group id")
        chat = SimChat(chat_id, "supergroup" if supergroup else "group", title, username)
        chat.bot_status = "administrator" if bot_is_admin else "member"
        for status, people in (("member", members), ("administrator", admins)):
            for person in people:
                chat.members[self.user(person).id] = status
        if owner is not None:
            chat.members[self.user(owner).id] = "creator"
        self.chats[chat_id] = chat
        return chat

    def set_member(self, chat_id: int, user: int | SimUser, status: str = "member") -> None:
        if status not in ("creator", "administrator", "member", "left", "kicked"):
            raise SimError(f"unknown member status {status!r}")
        self.chat(chat_id).members[self.user(user).id] = status

    # -- what users do -------------------------------------------------------------

    def send_text(
        self, chat_id: int, user: int | SimUser, text: str, *, reply_to: int | None = None
    ) -> SimMessage:
        """A user writes in a chat; commands and mentions get their entities."""
        sender = self.user(user)
        if chat_id == sender.id:
            chat = self.private_chat(sender)
            if chat.bot_status == "kicked":  # writing to a blocked bot means unblocking it
                self.set_bot_status(chat, "member", sender.id)
        else:
            chat = self.chat(chat_id)
            if chat.migrated_to is not None:
                raise SimError(f"chat {chat_id} was migrated to {chat.migrated_to}")
            if chat.members.get(sender.id) not in ("creator", "administrator", "member"):
                raise SimError(f"user {sender.id} is not a member of chat {chat_id}")
        message = self._add_message(
            chat, sender.id, text=text, entities=command_entities(text), reply_to=reply_to
        )
        if self._bot_sees(chat, message):
            self.enqueue("message", self.message_json(message))
        self.notify()
        return message

    def send_command(
        self,
        chat_id: int,
        user: int | SimUser,
        command: str,
        args: str = "",
        *,
        mention: bool = False,
    ) -> SimMessage:
        """`/command args`, or `/command@botname args` with mention=True."""
        text = f"/{command.lstrip('/')}" + (f"@{self.bot.username}" if mention else "")
        return self.send_text(chat_id, user, f"{text} {args}".rstrip())

    def press_button(
        self,
        chat_id: int,
        message_id: int,
        user: int | SimUser,
        *,
        data: str | None = None,
        text: str | None = None,
    ) -> SimCallbackQuery:
        """A user presses an inline button (found by callback_data or label) on a message."""
        presser = self.user(user)
        message = self.message(chat_id, message_id)
        button = find_button(message.inline_keyboard, data, text)
        if button is None or message.deleted:
            raise SimError(f"message {message_id} in chat {chat_id} has no such button")
        query = SimCallbackQuery(
            str(next(self._query_ids) * 7_919 + 4_000_000_000_000_000),
            presser.id,
            chat_id,
            message_id,
            str(button["callback_data"]),
        )
        self.callbacks[query.id] = query
        self.enqueue(
            "callback_query",
            {
                "id": query.id,
                "from": presser.to_api(),
                "message": self.message_json(message),
                "chat_instance": str(abs(chat_id) * 31 + 17),
                "data": query.data,
            },
        )
        self.notify()
        return query

    # -- faults --------------------------------------------------------------------

    def set_flood_limit(self, chat_id: int, limit: int, window_s: float) -> None:
        self.chat(chat_id).flood_rule = FloodRule(limit, window_s)

    def kick_bot(self, chat_id: int, *, by: int | SimUser | None = None) -> None:
        """The bot is removed from a group, or blocked by the user of a private chat."""
        chat = self.chat(chat_id)
        self.set_bot_status(chat, "kicked", self._actor(chat, by))

    def block_bot(self, user: int | SimUser) -> None:
        self.kick_bot(self.private_chat(user).id)

    def restore_bot(self, chat_id: int, *, admin: bool = False) -> None:
        chat = self.chat(chat_id)
        self.set_bot_status(chat, "administrator" if admin else "member", self._actor(chat, None))

    def migrate_group(self, chat_id: int) -> int:
        """Upgrade a basic group to a supergroup; the old id then answers migrate_to_chat_id."""
        old = self.chat(chat_id)
        if old.type != "group" or old.migrated_to is not None:
            raise SimError(f"chat {chat_id} is not a basic group")
        new = self.add_group(old.title or "", chat_id=-(1_001_000_000_000 + next(self._group_ids)))
        new.members, new.bot_status, new.username = dict(old.members), old.bot_status, old.username
        old.migrated_to = new.id
        actor = self._actor(old, None)
        for chat, service in (
            (old, {"migrate_to_chat_id": new.id}),
            (new, {"migrate_from_chat_id": old.id}),
        ):
            message = self._add_message(chat, actor, service=service)
            self.enqueue("message", self.message_json(message))
        self.notify()
        return new.id

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        error_code: int = 500,
        description: str = "Internal Server Error",
        retry_after: int | None = None,
    ) -> None:
        """The next `times` calls of a Bot API method answer this error instead."""
        params = {"retry_after": retry_after} if retry_after is not None else None
        queue = self.method_faults.setdefault(method.lower(), deque())
        queue.extend(TelegramApiError(error_code, description, params) for _ in range(times))

    def set_chaos(self, rate: float, *, seed: int | None = None) -> None:
        """Answer this fraction of Bot API calls with 429 (retry_after 1) or 5xx."""
        self.chaos_rate = rate
        if seed is not None:
            self.chaos_rng.seed(seed)

    def chaos_fault(self) -> TelegramApiError | None:
        if not self.chaos_rate or self.chaos_rng.random() >= self.chaos_rate:
            return None
        self.chaos_injected += 1
        code = self.chaos_rng.choice([429, 500, 502])
        if code == 429:
            return TelegramApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        return TelegramApiError(code, "Internal Server Error" if code == 500 else "Bad Gateway")

    def _bot_sees(self, chat: SimChat, message: SimMessage) -> bool:
        if chat.bot_status in ("kicked", "left"):
            return False
        if chat.type == "private" or not self.privacy_mode or chat.bot_status == "administrator":
            return True
        text = message.text or ""
        name = f"@{self.bot.username}".lower()
        replied = message.reply_to_message_id is not None and (
            self.message(chat.id, message.reply_to_message_id).from_bot
        )
        addressed = any(
            e["type"] == "bot_command"
            and ("@" not in (cmd := _entity_text(text, e)) or cmd.lower().endswith(name))
            for e in message.entities
        )
        return replied or addressed or name in text.lower()

    def _actor(self, chat: SimChat, by: int | SimUser | None) -> int:
        if by is not None:
            return self.user(by).id
        ranked = sorted(chat.members, key=lambda uid: chat.members[uid] != "creator")
        return ranked[0] if ranked else self.bot.id

    def transcript_entry(self, message: SimMessage) -> JsonDict:
        """A message as Telegram shows it, plus what only the simulator knows about it."""
        return {
            **self.message_json(message),
            "from_bot": message.from_bot,
            "deleted": message.deleted,
            "source_text": message.source_text,
            "parse_mode": message.parse_mode,
            "reply_markup": message.reply_markup,
            "edits": [vars(v) for v in message.edits],
            "document_base64": (
                base64.b64encode(message.document.content).decode() if message.document else None
            ),
        }


def _entity_text(text: str, entity: JsonDict) -> str:
    raw = text.encode("utf-16-le")
    start, end = entity["offset"] * 2, (entity["offset"] + entity["length"]) * 2
    return raw[start:end].decode("utf-16-le")
