"""Text rules of the simulated Bot API: HTML entities, command entities, keyboards.

Telegram measures entity offsets in UTF-16 code units and rejects HTML it cannot
parse; the product's renderer has to survive both, so the simulator enforces them.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from sim.telegram_protocol import bad_request

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64

JsonDict = dict[str, Any]

# HTML tags the Bot API understands and the entity each one becomes.
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_ALL_TAGS = {*_SIMPLE_TAGS, "a", "span", "tg-emoji"}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>")
_ATTR = re.compile(r"""([A-Za-z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"']+)))?""")
_CHAR_REF = re.compile(r"&(#[0-9]+|#x[0-9A-Fa-f]+|[A-Za-z]+);")
_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@/])")
_MENTION = re.compile(r"(?<![A-Za-z0-9_/])@[A-Za-z0-9_]{5,32}(?![A-Za-z0-9_])")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode())


def _unescape(chunk: str) -> str:
    # Only well-formed references are decoded; a lone "&" stays literal, as in Telegram.
    return _CHAR_REF.sub(lambda m: html.unescape(m.group(0)), chunk)


def _open_entity(name: str, attrs: str, source: str, at: int) -> JsonDict:
    found = {
        m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or ""
        for m in _ATTR.finditer(attrs)
    }
    if name == "a":
        href = found.get("href", "")
        if not href:
            return {"type": "_dropped"}
        return {"type": "text_link", "url": href}
    if name == "span":
        if found.get("class") != "tg-spoiler":
            raise bad_request(
                f'can\'t parse entities: Tag "span" must have class "tg-spoiler" '
                f"at byte offset {_byte_offset(source, at)}"
            )
        return {"type": "spoiler"}
    if name == "tg-emoji":
        return {"type": "custom_emoji", "custom_emoji_id": found.get("emoji-id", "")}
    if name == "blockquote" and "expandable" in found:
        return {"type": "expandable_blockquote"}
    if name == "code" and found.get("class", "").startswith("language-"):
        return {"type": "code", "language": found["class"].removeprefix("language-")}
    return {"type": _SIMPLE_TAGS[name]}


def parse_html(source: str) -> tuple[str, list[JsonDict]]:
    """Turn Bot API HTML into plain text plus entities, or raise "can't parse entities"."""
    out: list[str] = []
    stack: list[tuple[str, JsonDict, int]] = []
    entities: list[JsonDict] = []
    pos = 0
    while pos < len(source):
        lt = source.find("<", pos)
        if lt < 0:
            out.append(_unescape(source[pos:]))
            break
        out.append(_unescape(source[pos:lt]))
        match = _TAG.match(source, lt)
        if match is None or match.group(2).lower() not in _ALL_TAGS:
            tag = match.group(2) if match else source[lt + 1 : lt + 2].strip()
            raise bad_request(
                f'can\'t parse entities: Unsupported start tag "{tag}" '
                f"at byte offset {_byte_offset(source, lt)}"
            )
        closing, name = match.group(1) == "/", match.group(2).lower()
        offset = utf16_len("".join(out))
        if not closing:
            stack.append((name, _open_entity(name, match.group(3), source, lt), offset))
        else:
            if not stack or stack[-1][0] != name:
                expected = f', expected "</{stack[-1][0]}>"' if stack else ""
                raise bad_request(
                    f"can't parse entities: Unmatched end tag at byte offset "
                    f'{_byte_offset(source, lt)}{expected}, found "</{name}>"'
                )
            _, entity, start = stack.pop()
            if entity["type"] != "_dropped" and offset > start:
                entities.append({**entity, "offset": start, "length": offset - start})
        pos = match.end()
    if stack:
        raise bad_request(
            "can't parse entities: Can't find end tag corresponding to start tag "
            f'"{stack[-1][0]}"'
        )
    _merge_pre_code(entities)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _merge_pre_code(entities: list[JsonDict]) -> None:
    # <pre><code class="language-x"> is one "pre" entity with a language, not two.
    for code in [e for e in entities if e["type"] == "code" and "language" in e]:
        for pre in entities:
            if pre["type"] == "pre" and (pre["offset"], pre["length"]) == (
                code["offset"],
                code["length"],
            ):
                pre["language"] = code["language"]
                entities.remove(code)
                break


def format_text(text: str, parse_mode: str | None) -> tuple[str, list[JsonDict]]:
    """Apply parse_mode the way the Bot API does before it stores a message."""
    if not parse_mode:
        return text, []
    mode = parse_mode.lower()
    if mode == "html":
        return parse_html(text)
    if mode in ("markdown", "markdownv2"):
        # Markdown is accepted but not interpreted: the transcript keeps the source.
        return text, []
    raise bad_request("unsupported parse_mode")


def command_entities(text: str) -> list[JsonDict]:
    """Entities Telegram attaches to a user's message: bot_command and mention."""
    entities: list[JsonDict] = []
    for pattern, kind in ((_COMMAND, "bot_command"), (_MENTION, "mention")):
        for m in pattern.finditer(text):
            entities.append(
                {
                    "type": kind,
                    "offset": utf16_len(text[: m.start()]),
                    "length": utf16_len(m.group(0)),
                }
            )
    entities.sort(key=lambda e: e["offset"])
    return entities


_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "web_app",
    "callback_game",
    "pay",
)


def parse_reply_markup(raw: Any) -> JsonDict | None:
    """Validate reply_markup (a JSON string from forms, an object from JSON bodies)."""
    if raw is None or raw == "":
        return None
    markup = raw
    if isinstance(raw, str):
        try:
            markup = json.loads(raw)
        except ValueError:
            raise bad_request("can't parse reply keyboard markup JSON object") from None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        _check_inline_keyboard(markup["inline_keyboard"])
    elif not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
        raise bad_request("can't parse reply keyboard markup JSON object")
    return markup


def _check_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise bad_request("BUTTON_TEXT_INVALID")
            actions = [a for a in _BUTTON_ACTIONS if a in button]
            if len(actions) != 1:
                raise bad_request("can't parse inline keyboard button: exactly one action expected")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")
            if "url" in button and not re.match(r"^(https?|tg)://", str(button["url"])):
                raise bad_request("BUTTON_URL_INVALID")


def find_button(markup: JsonDict | None, data: str | None, text: str | None) -> JsonDict | None:
    """The inline button a user can press, matched by callback_data or by its label."""
    if not markup or "inline_keyboard" not in markup:
        return None
    for row in markup["inline_keyboard"]:
        for button in row:
            if "callback_data" not in button:
                continue
            if (data is not None and button["callback_data"] == data) or (
                text is not None and button["text"] == text
            ):
                return dict(button)
    return None


__all__ = [
    "MAX_CAPTION",
    "MAX_TEXT",
    "command_entities",
    "find_button",
    "format_text",
    "parse_html",
    "parse_reply_markup",
    "utf16_len",
]
