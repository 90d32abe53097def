"""What a failure talking to Hetzner means to us: one exception root, `HetznerError`,
with Hetzner's own code and our `kind` (retry later, try the next location, wait for
the project's capacity, or give up)."""

from __future__ import annotations

from enum import StrEnum

import requests
from hcloud import APIException


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # try again with the step policy's backoff
    CAPACITY = "capacity"  # this location cannot: try the next one
    PROJECT_LIMIT = "project_limit"  # the project's server limit: alert and wait
    NOT_FOUND = "not_found"
    PERMANENT = "permanent"  # invalid input, auth: retrying will not help


KINDS = {
    "resource_unavailable": ErrorKind.CAPACITY,
    "placement_error": ErrorKind.CAPACITY,
    "resource_limit_exceeded": ErrorKind.PROJECT_LIMIT,
    "not_found": ErrorKind.NOT_FOUND,
    "rate_limit_exceeded": ErrorKind.TRANSIENT,
    "conflict": ErrorKind.TRANSIENT,
    "locked": ErrorKind.TRANSIENT,
    "timeout": ErrorKind.TRANSIENT,
    "server_error": ErrorKind.TRANSIENT,
    "unavailable": ErrorKind.TRANSIENT,
    "maintenance": ErrorKind.TRANSIENT,
    "bad_gateway": ErrorKind.TRANSIENT,
    "action_failed": ErrorKind.TRANSIENT,
}


class HetznerError(Exception):
    """Any failure talking to Hetzner; `code` is Hetzner's, `kind` is what it means to us."""

    def __init__(self, code: str, message: str, kind: ErrorKind) -> None:
        super().__init__(f"hetzner {code}: {message}")
        self.code = code
        self.kind = kind


def translate(exc: Exception) -> HetznerError:
    """hcloud's and requests' exceptions as a HetznerError; anything else is re-raised."""
    if isinstance(exc, HetznerError):
        return exc
    if isinstance(exc, APIException):
        code = str(exc.code)
        if isinstance(exc.code, int):
            kind = (
                ErrorKind.TRANSIENT if exc.code >= 500 or exc.code == 429 else ErrorKind.PERMANENT
            )
        else:
            kind = KINDS.get(code, ErrorKind.PERMANENT)
        return HetznerError(code, str(exc.message), kind)
    if isinstance(exc, requests.RequestException):
        return HetznerError("network", type(exc).__name__, ErrorKind.TRANSIENT)
    raise exc
