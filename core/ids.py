"""Identifiers and tokens: a prefix and 12 characters of [a-z0-9], and long random secrets."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """`cust_…`, `inst_…`: 12 random characters of [a-z0-9] after the prefix."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def server_name(instance_id: str) -> str:
    """The RFC 1123 Hetzner server name of an instance, its idempotency key."""
    return "oc-" + instance_id.removeprefix("inst_")


def new_token() -> str:
    """A URL-safe single-use token ([A-Za-z0-9_-], 43 characters, fits Telegram's /start)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens are stored only as this hash, so a database leak does not leak a way in."""
    return hashlib.sha256(token.encode()).hexdigest()
