"""One way to keep secrets out of text shown to people or written to logs.

First our own secret values (settings), replaced wherever they appear; then anything
that looks like a secret: `…PASSWORD=…`, `token: …`, `Bearer …`, private key blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

# `[A-Za-z0-9]*_?` before the key so OPENCLAW_GATEWAY_PASSWORD and HCLOUD_TOKEN match too.
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z0-9_]*?(?:password|passwd|token|secret|api[_-]?key))"
    r"(\"?\s*[:=]\s*\"?)([^\s\"',;]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)([^\s\"',;]+)")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _PRIVATE_KEY.sub("[redacted private key]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
