"""The simulated Telegram world's records: users, chats, messages, button presses.

Each record knows its own Bot API shape where that needs nothing else (a User, a
Document); shapes that join records (a Message with its Chat) live on the world.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
    "can_pin_messages",
)


class SimError(ValueError):
    """A control-API misuse (unknown chat, a button that is not there): a test bug."""


@dataclass(frozen=True)
class FloodRule:
    """At most `limit` bot messages per `window_s` seconds (times time_scale) in a chat."""

    limit: int
    window_s: float


GROUP_FLOOD = FloodRule(limit=20, window_s=60.0)
# "About one message per second" in private chats, with the short burst Telegram tolerates.
PRIVATE_FLOOD = FloodRule(limit=5, window_s=5.0)


@dataclass
class SimUser:
    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False

    def to_api(self) -> JsonDict:
        data: JsonDict = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        return data


@dataclass
class SimDocument:
    file_id: str
    file_unique_id: str
    file_name: str
    mime_type: str
    content: bytes

    def to_api(self) -> JsonDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_name": self.file_name,
            "mime_type": self.mime_type,
            "file_size": len(self.content),
        }


@dataclass
class MessageVersion:
    """What a message said before an edit replaced it."""

    text: str | None
    caption: str | None
    reply_markup: JsonDict | None
    date: int


@dataclass
class SimMessage:
    chat_id: int
    message_id: int
    sender_id: int
    from_bot: bool
    date: int
    text: str | None = None
    entities: list[JsonDict] = field(default_factory=list)
    # What the bot sent before parse_mode was applied, so tests can check the markup.
    source_text: str | None = None
    parse_mode: str | None = None
    caption: str | None = None
    caption_entities: list[JsonDict] = field(default_factory=list)
    document: SimDocument | None = None
    reply_markup: JsonDict | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    edits: list[MessageVersion] = field(default_factory=list)
    deleted: bool = False
    service: JsonDict = field(default_factory=dict)

    @property
    def inline_keyboard(self) -> JsonDict | None:
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup
        return None

    @property
    def button_data(self) -> list[str]:
        rows = (self.inline_keyboard or {}).get("inline_keyboard", [])
        return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


@dataclass
class SimChat:
    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None
    username: str | None = None
    members: dict[int, str] = field(default_factory=dict)  # user id -> member status
    bot_status: str = "member"  # "member", "administrator", "kicked" or "left"
    migrated_to: int | None = None
    flood_rule: FloodRule | None = None
    bot_sends: deque[float] = field(default_factory=deque)
    messages: list[SimMessage] = field(default_factory=list)
    bot_cursor: int = 0  # where next_bot_message continues reading

    @property
    def kind(self) -> str:
        return "supergroup" if self.type == "supergroup" else "group"


@dataclass
class SimCallbackQuery:
    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    answer: JsonDict | None = None


@dataclass
class ApiCall:
    method: str
    params: JsonDict
    error_code: int | None = None
