"""Paddle's customers API, for the email and name no webhook payload carries.

`ContactSync` looks up every customer whose contact is missing, with backoff per
customer, so events apply while Paddle's API is down and emails arrive later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import ClientError, ClientSession, ClientTimeout

from core.clock import Clock, to_iso
from core.customers import Customers
from core.models import ACTOR_PADDLE
from db.connection import Database

log = logging.getLogger(__name__)

# Backoff between lookups of one customer: 5 s, 30 s, 2 min, 10 min, then hourly.
BACKOFF_S = (5, 30, 120, 600, 3600)


class PaddleApiError(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"Paddle API answered {status} {code}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class PaddleContact:
    email: str
    name: str | None


class PaddleCustomers:
    def __init__(self, base_url: str, api_key: str, session: ClientSession) -> None:
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session

    async def get(self, paddle_customer_id: str) -> PaddleContact:
        url = f"{self._base}/customers/{paddle_customer_id}"
        headers = {"Authorization": f"Bearer {self._api_key}"}
        async with self._session.get(url, headers=headers, timeout=ClientTimeout(total=10)) as r:
            body = await r.json(content_type=None)
        if not isinstance(body, dict):
            raise PaddleApiError(r.status, "malformed_response")
        if r.status != 200:
            error = body.get("error")
            code = error.get("code", "unknown") if isinstance(error, dict) else "unknown"
            raise PaddleApiError(r.status, str(code))
        data = body.get("data")
        if not isinstance(data, dict):
            raise PaddleApiError(r.status, "malformed_response")
        return PaddleContact(email=str(data.get("email") or ""), name=data.get("name") or None)


class ContactSync:
    """Fills in customers' emails from Paddle; `wake()` after an event skips the wait."""

    def __init__(
        self, db: Database, clock: Clock, customers: Customers, paddle: PaddleCustomers
    ) -> None:
        self.db = db
        self.clock = clock
        self.customers = customers
        self.paddle = paddle
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Look up every customer that is due; returns how many were filled in."""
        due = await self.db.fetch_all(
            "SELECT id, paddle_customer_id, contact_attempts FROM customers WHERE "
            "paddle_customer_id IS NOT NULL AND contact_next_attempt_at IS NOT NULL AND "
            "contact_next_attempt_at <= ? ORDER BY contact_next_attempt_at LIMIT 50",
            (to_iso(self.clock.now()),),
        )
        filled = 0
        for row in due:
            try:
                contact = await self.paddle.get(row["paddle_customer_id"])
            except (PaddleApiError, ClientError, TimeoutError, ValueError) as exc:
                delay = BACKOFF_S[min(row["contact_attempts"], len(BACKOFF_S) - 1)]
                await self.customers.contact_failed(
                    row["id"], str(exc), self.clock.now() + timedelta(seconds=delay)
                )
                continue
            await self.customers.set_contact(row["id"], contact.email, contact.name, ACTOR_PADDLE)
            filled += 1
        return filled

    async def run(self, idle_s: float = 5.0) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("contact sync failed; trying again")
            self._wake.clear()
            # Wake on a new event, or look again soon for customers whose backoff ended.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle_s)
