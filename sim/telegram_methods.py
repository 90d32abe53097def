"""The Bot API methods a bot calls, acting on the simulated world.

Each handler takes the world and the request's parameters and returns the `result`
of a successful answer, or raises TelegramApiError with Telegram's own description.
getUpdates is not here: long polling belongs to the server (`sim.telegram`).
"""

from __future__ import annotations

import json
import mimetypes
import re
import time
from collections.abc import Callable
from typing import Any

from sim.telegram_model import MessageVersion, SimChat, SimDocument, SimMessage
from sim.telegram_protocol import Params, Upload, bad_request
from sim.telegram_state import TelegramWorld
from sim.telegram_text import MAX_CAPTION, MAX_TEXT, format_text, parse_reply_markup

JsonDict = dict[str, Any]

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
DEFAULT_ALLOWED = [
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "my_chat_member",
]


Handler = Callable[[TelegramWorld, Params], Any]


def get_me(world: TelegramWorld, p: Params) -> JsonDict:
    return {
        **world.bot.to_api(),
        "can_join_groups": True,
        "can_read_all_group_messages": not world.privacy_mode,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def _formatted(p: Params, key: str, limit: int, too_long: str) -> tuple[str, list[JsonDict]]:
    source = p.text(key) or ""
    entities_key = "entities" if key == "text" else "caption_entities"
    if p.raw(entities_key) not in (None, ""):
        text, entities = source, list(p.json(entities_key))
    else:
        text, entities = format_text(source, p.text("parse_mode"))
    if len(text) > limit:
        raise bad_request(too_long)
    return text, entities


def _reply_to(world: TelegramWorld, chat: SimChat, p: Params) -> int | None:
    reply = p.json("reply_parameters") or {}
    target = reply.get("message_id") or p.integer("reply_to_message_id")
    if target is None:
        return None
    messages = chat.messages
    if 1 <= int(target) <= len(messages) and not messages[int(target) - 1].deleted:
        return int(target)
    if reply.get("allow_sending_without_reply") or p.flag("allow_sending_without_reply"):
        return None
    raise bad_request("message to be replied not found")


def send_message(world: TelegramWorld, p: Params) -> JsonDict:
    chat = p.chat(world)
    text, entities = _formatted(p, "text", MAX_TEXT, "message is too long")
    if not text.strip():
        raise bad_request("message text is empty")
    markup = parse_reply_markup(p.raw("reply_markup"))
    reply_to = _reply_to(world, chat, p)
    world.take_send_slot(chat)
    message = world.add_bot_message(
        chat,
        text=text,
        entities=entities,
        source_text=p.text("text"),
        parse_mode=p.text("parse_mode"),
        reply_markup=markup,
        reply_to=reply_to,
    )
    return world.message_json(message)


def send_document(world: TelegramWorld, p: Params) -> JsonDict:
    chat = p.chat(world)
    document = _document(world, p)
    caption, caption_entities = _formatted(p, "caption", MAX_CAPTION, "message caption is too long")
    markup = parse_reply_markup(p.raw("reply_markup"))
    reply_to = _reply_to(world, chat, p)
    world.take_send_slot(chat)
    message = world.add_bot_message(
        chat,
        document=document,
        caption=caption or None,
        caption_entities=caption_entities,
        parse_mode=p.text("parse_mode"),
        reply_markup=markup,
        reply_to=reply_to,
    )
    return world.message_json(message)


def _document(world: TelegramWorld, p: Params) -> SimDocument:
    value = p.raw("document")
    if isinstance(value, str) and value.startswith("attach://"):
        value = p.raw(value.removeprefix("attach://"))
    if isinstance(value, Upload):
        if not value.content:
            raise bad_request("file must be non-empty")
        number = len(world.files) + 1
        name = value.filename or f"document_{number}"
        mime = value.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if mime == "application/octet-stream":
            mime = mimetypes.guess_type(name)[0] or mime
        unique = f"AgAD{number:08d}"
        document = SimDocument(f"BQACAgIAAxkDAAI{number:012d}", unique, name, mime, value.content)
        world.files[document.file_id] = document
        return document
    if isinstance(value, str) and value in world.files:
        return world.files[value]
    if value in (None, ""):
        raise bad_request("there is no document in the request")
    raise bad_request("wrong file identifier/HTTP URL specified")


def _editable(world: TelegramWorld, p: Params) -> tuple[SimChat, SimMessage]:
    if p.raw("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    chat = p.chat(world)
    message_id = p.integer("message_id", required=True)
    assert message_id is not None
    if not 1 <= message_id <= len(chat.messages) or chat.messages[message_id - 1].deleted:
        raise bad_request("message to edit not found")
    message = chat.messages[message_id - 1]
    if not message.from_bot:
        raise bad_request("message can't be edited")
    return chat, message


def _keep_version(world: TelegramWorld, message: SimMessage) -> None:
    message.edits.append(
        MessageVersion(
            message.text, message.caption, message.reply_markup, message.edit_date or message.date
        )
    )
    message.edit_date = int(time.time())
    world.notify()


def edit_message_text(world: TelegramWorld, p: Params) -> JsonDict:
    _, message = _editable(world, p)
    text, entities = _formatted(p, "text", MAX_TEXT, "MESSAGE_TOO_LONG")
    if not text.strip():
        raise bad_request("message text is empty")
    if message.text is None:
        raise bad_request("there is no text in the message to edit")
    markup = parse_reply_markup(p.raw("reply_markup"))
    if (text, entities, markup) == (message.text, message.entities, message.inline_keyboard):
        raise bad_request(NOT_MODIFIED)
    _keep_version(world, message)
    message.text, message.entities, message.reply_markup = text, entities, markup
    message.source_text, message.parse_mode = p.text("text"), p.text("parse_mode")
    return world.message_json(message)


def edit_message_reply_markup(world: TelegramWorld, p: Params) -> JsonDict:
    _, message = _editable(world, p)
    markup = parse_reply_markup(p.raw("reply_markup"))
    if markup == message.inline_keyboard:
        raise bad_request(NOT_MODIFIED)
    _keep_version(world, message)
    message.reply_markup = markup
    return world.message_json(message)


def answer_callback_query(world: TelegramWorld, p: Params) -> bool:
    query = world.callbacks.get(p.text("callback_query_id") or "")
    if query is None or query.answer is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    query.answer = {
        "text": p.text("text"),
        "show_alert": p.flag("show_alert"),
        "url": p.text("url"),
        "cache_time": p.integer("cache_time") or 0,
    }
    world.notify()
    return True


def delete_message(world: TelegramWorld, p: Params) -> bool:
    chat = p.chat(world)
    message_id = p.integer("message_id", required=True)
    assert message_id is not None
    if not 1 <= message_id <= len(chat.messages) or chat.messages[message_id - 1].deleted:
        raise bad_request("message to delete not found")
    message = chat.messages[message_id - 1]
    may_delete = chat.type == "private" or chat.bot_status == "administrator"
    if not message.from_bot and not may_delete:
        raise bad_request("message can't be deleted")
    message.deleted = True
    world.notify()
    return True


def send_chat_action(world: TelegramWorld, p: Params) -> bool:
    p.chat(world)
    return True


def get_chat(world: TelegramWorld, p: Params) -> JsonDict:
    chat = p.chat(world)
    gifts = ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription")
    return {
        **world.chat_json(chat),
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": dict.fromkeys((*gifts, "gifts_from_channels"), False),
    }


def get_chat_member(world: TelegramWorld, p: Params) -> JsonDict:
    chat = p.chat(world)
    user_id = p.integer("user_id", required=True)
    if user_id not in world.users:
        raise bad_request("user not found")
    return world.member_json(chat, user_id)


def get_chat_administrators(world: TelegramWorld, p: Params) -> list[JsonDict]:
    chat = p.chat(world)
    if chat.type == "private":
        raise bad_request("there are no administrators in the private chat")
    people = [uid for uid, s in chat.members.items() if s in ("creator", "administrator")]
    if chat.bot_status == "administrator":
        people.append(world.bot.id)
    return [world.member_json(chat, uid) for uid in people]


def leave_chat(world: TelegramWorld, p: Params) -> bool:
    chat = p.chat(world)
    if chat.type == "private":
        raise bad_request("chat member status can't be changed in private chats")
    world.set_bot_status(chat, "left", world.bot.id)
    return True


_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


def _commands_key(p: Params) -> str:
    scope = p.json("scope") or {"type": "default"}
    return json.dumps(scope, sort_keys=True) + "|" + (p.text("language_code") or "")


def set_my_commands(world: TelegramWorld, p: Params) -> bool:
    commands = p.json("commands")
    if not isinstance(commands, list):
        raise bad_request(
            "commands is empty" if commands is None else "can't parse commands JSON object"
        )
    if len(commands) > 100:
        raise bad_request("BOT_COMMANDS_TOO_MUCH")
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND_NAME.fullmatch(
            str(command.get("command", ""))
        ):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    world.commands[_commands_key(p)] = [
        {"command": c["command"], "description": c["description"]} for c in commands
    ]
    return True


def get_my_commands(world: TelegramWorld, p: Params) -> list[JsonDict]:
    return world.commands.get(_commands_key(p), [])


def delete_my_commands(world: TelegramWorld, p: Params) -> bool:
    world.commands.pop(_commands_key(p), None)
    return True


_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LOOPBACK_HTTP = re.compile(r"http://(127\.\d+\.\d+\.\d+|localhost)(:\d+)?(/|$)")


def set_webhook(world: TelegramWorld, p: Params) -> bool:
    url = p.text("url") or ""
    if url == "":
        world.webhook = None
        return True
    # Telegram insists on HTTPS; plain HTTP is allowed to loopback so webhook mode is testable.
    if not url.startswith("https://") and not _LOOPBACK_HTTP.match(url):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = p.text("secret_token")
    if secret is not None and not _SECRET.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    if p.flag("drop_pending_updates"):
        world.updates.clear()
    allowed = p.json("allowed_updates")
    if allowed is not None:
        world.allowed_updates = list(allowed)
    world.webhook = {"url": url, "secret_token": secret}
    world.notify()
    return True


def delete_webhook(world: TelegramWorld, p: Params) -> bool:
    if p.flag("drop_pending_updates"):
        world.updates.clear()
    world.webhook = None
    world.notify()
    return True


def get_webhook_info(world: TelegramWorld, p: Params) -> JsonDict:
    info: JsonDict = {
        "url": (world.webhook or {}).get("url", ""),
        "has_custom_certificate": False,
        "pending_update_count": len(world.updates),
    }
    if world.webhook:
        info["max_connections"] = 40
        info["allowed_updates"] = world.allowed_updates or DEFAULT_ALLOWED
    return info


def get_file(world: TelegramWorld, p: Params) -> JsonDict:
    document = world.files.get(p.text("file_id") or "")
    if document is None:
        raise bad_request("invalid file_id")
    return {
        "file_id": document.file_id,
        "file_unique_id": document.file_unique_id,
        "file_size": len(document.content),
        "file_path": f"documents/{document.file_unique_id}_{document.file_name}",
    }


METHODS: dict[str, Handler] = {
    name.lower(): handler
    for name, handler in {
        "getMe": get_me,
        "sendMessage": send_message,
        "sendDocument": send_document,
        "editMessageText": edit_message_text,
        "editMessageReplyMarkup": edit_message_reply_markup,
        "answerCallbackQuery": answer_callback_query,
        "deleteMessage": delete_message,
        "sendChatAction": send_chat_action,
        "getChat": get_chat,
        "getChatMember": get_chat_member,
        "getChatAdministrators": get_chat_administrators,
        "leaveChat": leave_chat,
        "setMyCommands": set_my_commands,
        "getMyCommands": get_my_commands,
        "deleteMyCommands": delete_my_commands,
        "setWebhook": set_webhook,
        "deleteWebhook": delete_webhook,
        "getWebhookInfo": get_webhook_info,
        "getFile": get_file,
    }.items()
}
