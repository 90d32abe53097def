"""From a storefront visit to a ready server: onboarding tokens, the status a visitor may
see, and how many lifetime purchases are still on offer.

An onboarding token is minted for every visit of the storefront and rides through
Paddle's checkout as `custom_data.onboarding_token`; billing stores its hash on the
customer (core/billing.py), the bot binds a Telegram chat with it
(`t.me/<bot>?start=<token>`), and the welcome page follows provisioning with it.

Minting stores nothing. A visit must not be able to grow the database, and most
visits never pay. Instead the token carries its own proof of origin: 18 random bytes
and an HMAC of them under a key derived from ADMIN_API_KEY, 48 characters of
[A-Za-z0-9_-] (Telegram's /start allows 64). So the status of a token nobody has paid
with yet is answerable ("waiting for payment") without a row, and a token we never
minted is told apart from it (404). Rotating ADMIN_API_KEY only turns the status of
minted-but-unpaid tokens into 404; paid ones are found by their stored hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from enum import StrEnum
from typing import Any

from core.ids import token_hash
from db.connection import Database

_RANDOM_BYTES = 18
_MAC_BYTES = 18
_PART = 24  # characters of base64url for 18 bytes
_MINTED = re.compile(rf"[A-Za-z0-9_-]{{{2 * _PART}}}")
# Tokens minted elsewhere (the bot's email links, the demo) are [A-Za-z0-9_-], <= 64.
_ANY_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
# How many of the newest Paddle events the fallback lookup reads (see _from_paddle_events).
RECENT_EVENTS = 2000


class OnboardingStatus(StrEnum):
    """What the welcome page may say; nothing else about the customer leaves here."""

    WAITING_FOR_PAYMENT = "waiting_for_payment"  # minted by a visit, no payment seen yet
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELAYED = "delayed"  # provisioning failed; the operators have been alerted
    ENDED = "ended"  # the server was destroyed


_FROM_INSTANCE = {
    "provisioning": OnboardingStatus.PROVISIONING,
    "active": OnboardingStatus.ACTIVE,
    "suspended": OnboardingStatus.SUSPENDED,
    "failed": OnboardingStatus.DELAYED,
    "destroyed": OnboardingStatus.ENDED,
}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class OnboardingTokens:
    """Mints and checks onboarding tokens; `secret` is ADMIN_API_KEY's value."""

    def __init__(self, secret: str) -> None:
        # A key of its own, so a token's MAC says nothing about the admin key.
        self._key = hmac.new(
            secret.encode(), b"openclaw-hosted onboarding token v1", hashlib.sha256
        ).digest()

    def _mac(self, random_part: str) -> str:
        digest = hmac.new(self._key, random_part.encode(), hashlib.sha256).digest()
        return _b64(digest[:_MAC_BYTES])

    def mint(self) -> str:
        """A fresh token for one storefront visit (or the demo's customer); stores nothing."""
        random_part = _b64(secrets.token_bytes(_RANDOM_BYTES))
        return random_part + self._mac(random_part)

    def minted_here(self, token: str) -> bool:
        if not _MINTED.fullmatch(token):
            return False
        return hmac.compare_digest(token[_PART:], self._mac(token[:_PART]))

    async def status(self, db: Database, token: str) -> OnboardingStatus | None:
        """Where the purchase made with `token` stands; None for a token we do not know.

        A token on a customer is found by its hash. Two cases leave a paid token off its
        customer: a returning customer (billing keeps the first token it stored) and a
        customer whose setup email carried a fresh Telegram link (the bot replaces the
        hash). For those the token is looked for in the newest Paddle events, where it
        arrived as custom_data.
        """
        if not _ANY_TOKEN.fullmatch(token):
            return None
        found = await _from_customer(db, token)
        if found is None:
            found = await _from_paddle_events(db, token)
        if found is not None:
            return found
        return OnboardingStatus.WAITING_FOR_PAYMENT if self.minted_here(token) else None


async def _from_customer(db: Database, token: str) -> OnboardingStatus | None:
    row = await db.fetch_one(
        "SELECT id FROM customers WHERE onboarding_token_hash = ?", (token_hash(token),)
    )
    if row is None:
        return None
    # The token was stored by the customer's first purchase that carried one.
    instance = await db.fetch_one(
        "SELECT status FROM instances WHERE customer_id = ? ORDER BY created_at, id LIMIT 1",
        (row["id"],),
    )
    return _instance_status(instance["status"] if instance else None)


async def _from_paddle_events(db: Database, token: str) -> OnboardingStatus | None:
    """The purchase whose checkout carried `token`, from the newest Paddle events.

    Bounded to the newest RECENT_EVENTS rows: this runs for every status poll of a
    token not on a customer, and the welcome page is watched in the minutes after a
    payment, when its events are among the newest.
    """
    rows = await db.fetch_all(
        "SELECT event_type, payload FROM (SELECT rowid, event_type, payload FROM "
        "paddle_events ORDER BY rowid DESC LIMIT ?) WHERE instr(payload, ?) > 0",
        (RECENT_EVENTS, token),
    )
    for row in rows:
        data = _event_data(row["payload"])
        custom = data.get("custom_data")
        if not isinstance(custom, dict) or custom.get("onboarding_token") != token:
            continue
        purchase = await _purchase_instance(db, str(row["event_type"]), data)
        if purchase is not None:
            return purchase
    return None


def _event_data(payload: str) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError:
        return {}
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


async def _purchase_instance(
    db: Database, event_type: str, data: dict[str, Any]
) -> OnboardingStatus | None:
    entity = data.get("id")
    if not isinstance(entity, str):
        return None
    if event_type.startswith("subscription."):
        column, key = "subscription_id", entity
    elif isinstance(data.get("subscription_id"), str):
        column, key = "subscription_id", data["subscription_id"]
    else:
        column, key = "purchase_id", entity  # a lifetime purchase is its transaction
    instance = await db.fetch_one(
        f"SELECT status FROM instances WHERE {column} = ? "  # noqa: S608 - a fixed column
        "ORDER BY created_at, id LIMIT 1",
        (key,),
    )
    if instance is not None:
        return _instance_status(instance["status"])
    paid = await db.fetch_one(
        "SELECT 1 FROM subscriptions WHERE id = ? UNION ALL SELECT 1 FROM purchases WHERE id = ?",
        (key, key),
    )
    return OnboardingStatus.PROVISIONING if paid else None


def _instance_status(status: str | None) -> OnboardingStatus:
    # A customer without an instance yet has paid: the instance is on its way.
    return _FROM_INSTANCE.get(status or "", OnboardingStatus.PROVISIONING)


async def lifetime_spots_left(db: Database, cap: int) -> int:
    """Lifetime purchases still on offer: the cap less those sold and not refunded, the
    same count billing alerts on when a payment arrives over the cap."""
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM purchases WHERE refunded_at IS NULL")
    sold = int(row["n"]) if row is not None else 0
    return max(0, cap - sold)
