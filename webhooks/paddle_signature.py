"""Paddle-Signature verification: HMAC-SHA256 over `"{ts}:{raw body}"`.

Any `h1` may match any configured secret (rotation sends several). The timestamp
tolerance guards against old captures; `event_id` de-duplication is the real
replay guard, since Paddle's own retries may carry an old `ts`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """Why a signature was refused; the message never contains a secret or a digest."""


def parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        value = value.strip()
        if key == "ts":
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError("ts is not a Unix timestamp")
            timestamp = int(value)
        elif key == "h1" and _DIGEST.fullmatch(value.lower()):
            digests.append(value.lower())  # anything else cannot match: skip it
    if timestamp is None:
        raise SignatureError("Paddle-Signature has no ts")
    if not digests:
        raise SignatureError("Paddle-Signature has no h1")
    return timestamp, digests


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b":" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_s: int | None,
) -> None:
    """Raise `SignatureError` unless some `h1` matches some secret within the tolerance.

    `tolerance_s=None` skips the timestamp check (only for Paddle's fixed test vectors).
    """
    if not header:
        raise SignatureError("missing Paddle-Signature header")
    timestamp, digests = parse_header(header)
    if tolerance_s is not None and abs(now - timestamp) > tolerance_s:
        raise SignatureError("signature timestamp outside the tolerance")
    for secret in secrets:
        expected = sign(secret, timestamp, body).encode()
        # Constant-time per comparison; which secret or digest matched is not secret.
        if any(hmac.compare_digest(expected, digest.encode()) for digest in digests):
            return
    raise SignatureError("no signature matches")
