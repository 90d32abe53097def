"""The Bot API's wire: parameters in (query, form, multipart, JSON), errors out.

Errors use Telegram's own shape: ok false, error_code, description, parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from sim.telegram_model import SimChat
    from sim.telegram_state import TelegramWorld

MAX_UPLOAD = 50 * 1024 * 1024  # the Bot API's limit for files a bot sends


class TelegramApiError(Exception):
    """An error the simulated Bot API answers with; the HTTP status equals error_code."""

    def __init__(
        self, error_code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str, **parameters: Any) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {detail}", parameters or None)


def forbidden(detail: str) -> TelegramApiError:
    return TelegramApiError(403, f"Forbidden: {detail}")


def too_many_requests(retry_after: int) -> TelegramApiError:
    return TelegramApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


def conflict(detail: str) -> TelegramApiError:
    return TelegramApiError(409, f"Conflict: {detail}")


def unauthorized() -> TelegramApiError:
    return TelegramApiError(401, "Unauthorized")


def not_found() -> TelegramApiError:
    return TelegramApiError(404, "Not Found")


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str | None
    content: bytes


class Params:
    """Request parameters: strings from forms (aiogram), typed values from JSON bodies."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None or isinstance(value, Upload) else str(value)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        return self.values.get(name) in (True, 1, "true", "True", "1")

    def json(self, name: str) -> Any:
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None

    def chat(self, world: TelegramWorld) -> SimChat:
        if self.values.get("chat_id") in (None, ""):
            raise bad_request("chat_id is empty")
        return world.chat_for_bot(self.values["chat_id"])


async def read_params(request: web.Request) -> Params:
    """Parameters from the query string and a form, multipart or JSON body."""
    values: dict[str, Any] = dict(request.query)
    if not request.can_read_body:
        return Params(values)
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if isinstance(body, dict):
            values.update(body)
    elif ctype == "multipart/form-data":
        reader = await request.multipart()
        size = 0
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            content = bytes(await part.read(decode=True))
            size += len(content)
            if size > MAX_UPLOAD:
                raise TelegramApiError(413, "Request Entity Too Large")
            if part.filename is not None:
                values[part.name] = Upload(part.filename, part.headers.get("Content-Type"), content)
            else:
                values[part.name] = content.decode(part.get_charset("utf-8"))
    elif ctype == "application/x-www-form-urlencoded":
        values.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return Params(values)
