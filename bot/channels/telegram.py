"""Telegram delivery: one message part to one chat, its outcome classified.

aiogram raises one exception per kind of refusal; which of them are permanent follows
healthchecks' transport (STYLE.md): a kicked or blocked bot and a missing chat are
permanent for that chat, 429 and 5xx and network trouble are transient, and a group's
migration gives the id to use instead. aiogram retries nothing itself.
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.types import LinkPreviewOptions
from aiohttp import ClientError

from bot.channels import Migrated, Outcome, Rejected, RetryLater, Sent, Unreachable

log = logging.getLogger(__name__)

MAX_MESSAGE = 4096  # characters of text after entity parsing; markup only adds to the source

_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)  # a login link must not be fetched

# 400s that mean the chat itself is gone, not that this message was malformed.
_GONE = ("chat not found", "user is deactivated", "have no rights to send", "not enough rights")


class TelegramChannel:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, chat_id: int, html: str) -> Outcome:
        """Send one part (≤ 4096 characters of HTML source) with link previews off."""
        try:
            await self.bot.send_message(
                chat_id, html, parse_mode="HTML", link_preview_options=_NO_PREVIEW
            )
        except TelegramRetryAfter as error:
            return RetryLater(f"429: retry after {error.retry_after} s", float(error.retry_after))
        except TelegramMigrateToChat as error:
            return Migrated(error.migrate_to_chat_id)
        except TelegramForbiddenError as error:
            return Unreachable(f"403: {error.message}")
        except TelegramBadRequest as error:
            if any(marker in error.message.lower() for marker in _GONE):
                return Unreachable(f"400: {error.message}")
            return Rejected(f"400: {error.message}")
        except TelegramNotFound as error:
            return Unreachable(f"404: {error.message}")
        except TelegramNetworkError as error:
            return RetryLater(f"network: {error.message}")
        except TelegramAPIError as error:
            # 5xx, 401 (a revoked token is fixed by a restart, not by dropping messages), 409.
            return RetryLater(f"{type(error).__name__}: {error.message}")
        except (ClientError, TimeoutError, OSError) as error:
            return RetryLater(f"network: {type(error).__name__}")
        return Sent()


def split_html(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split at line ends into parts of at most `limit` characters of source.

    Counting the source (not the parsed text) is conservative and keeps each part valid
    HTML as long as tags do not span lines, which our renderers guarantee. A line longer
    than the limit (a long alert body, escaped) is cut, never inside an `&entity;`.
    """
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = _safe_cut(line, limit)
            parts, current = _flush(parts, current), ""
            parts.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts = _flush(parts, current)
            candidate = line
        current = candidate
    return _flush(parts, current)


def _flush(parts: list[str], current: str) -> list[str]:
    if current.strip():
        parts.append(current)
    return parts


def _safe_cut(line: str, limit: int) -> int:
    """The largest cut ≤ limit that is not inside an entity or a tag."""
    cut = limit
    amp, semi = line.rfind("&", 0, cut), line.rfind(";", 0, cut)
    if amp > semi:
        cut = amp
    lt, gt = line.rfind("<", 0, cut), line.rfind(">", 0, cut)
    if lt > gt:
        cut = lt
    return cut if cut > 0 else limit
