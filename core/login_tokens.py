"""Login links for customers: `PUBLIC_BASE_URL/login/<token>`.

A token is long and random, stored only as its hash, valid for `LOGIN_TOKEN_DAYS`
or until used once. Whoever shows the customer their way in mints one at that
moment (the outbox when it renders a setup message, the bot's /link).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import aiosqlite

from core.clock import Clock, from_iso, to_iso
from core.ids import new_token, token_hash
from db.connection import Database
from db.records import fetch_one, insert


class TokenProblem(StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"


class TokenInvalid(Exception):
    def __init__(self, problem: TokenProblem) -> None:
        super().__init__(f"login link {problem.value}")
        self.problem = problem


@dataclass(frozen=True)
class LoginGrant:
    instance_id: str
    customer_id: str


class LoginTokens:
    def __init__(self, db: Database, clock: Clock, ttl: timedelta = timedelta(days=7)) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl

    async def mint(self, instance_id: str) -> str:
        """A fresh token for the instance's owner; only its hash is stored."""
        token = new_token()
        now = self.clock.now()
        async with self.db.transaction() as conn:
            row = await fetch_one(
                conn, "SELECT customer_id FROM instances WHERE id = ?", (instance_id,)
            )
            if row is None:
                raise LookupError(f"instance {instance_id} not found")
            await insert(
                conn,
                "login_tokens",
                {
                    "token_hash": token_hash(token),
                    "instance_id": instance_id,
                    "customer_id": row["customer_id"],
                    "created_at": to_iso(now),
                    "expires_at": to_iso(now + self.ttl),
                },
            )
        return token

    async def check(self, token: str) -> LoginGrant:
        """What the token grants, without using it (the GET of the login page)."""
        row = await self.db.fetch_one(
            "SELECT * FROM login_tokens WHERE token_hash = ?", (token_hash(token),)
        )
        return self._grant(row)

    async def consume(self, token: str) -> LoginGrant:
        """Use the token, once (the POST of the login page)."""
        async with self.db.transaction() as conn:
            row = await fetch_one(
                conn, "SELECT * FROM login_tokens WHERE token_hash = ?", (token_hash(token),)
            )
            grant = self._grant(row)
            await conn.execute(
                "UPDATE login_tokens SET used_at = ? WHERE token_hash = ?",
                (to_iso(self.clock.now()), token_hash(token)),
            )
        return grant

    def _grant(self, row: aiosqlite.Row | None) -> LoginGrant:
        if row is None:
            raise TokenInvalid(TokenProblem.UNKNOWN)
        if row["used_at"] is not None:
            raise TokenInvalid(TokenProblem.USED)
        if from_iso(row["expires_at"]) <= self.clock.now():
            raise TokenInvalid(TokenProblem.EXPIRED)
        return LoginGrant(row["instance_id"], row["customer_id"])
