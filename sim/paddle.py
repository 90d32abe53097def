"""Paddle on loopback: the customers API and a webhook sender that signs like Paddle.

The API answers `GET /customers/{id}` and `GET /customers?per_page=N` with Paddle's
shapes (`{data, meta}` and `{error: {type, code, detail, documentation_url}, meta}`),
with knobs for an outage. The sender builds realistic envelopes (`evt_…`, `ntf_…`, microsecond
`occurred_at`), signs them (`ts=…;h1=…`) and delivers them at least once:
duplicates, out of order, and retried while the receiver answers non-2xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

_ULID = string.digits + "abcdefghjkmnpqrstvwxyz"  # Paddle ids are lower-case ULIDs


def paddle_id(prefix: str) -> str:
    return f"{prefix}_01" + "".join(secrets.choice(_ULID) for _ in range(24))


def paddle_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return f"ts={ts};h1={digest}"


@dataclass
class Customer:
    id: str
    email: str
    name: str | None = None
    custom_data: dict[str, Any] | None = None
    created_at: str = field(default_factory=paddle_time)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "status": "active",
            "custom_data": self.custom_data,
            "locale": "en",
            "marketing_consent": False,
            "import_meta": None,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


class PaddleSim:
    """`GET /customers/{id}` and `GET /customers` behind a Bearer API key; `failures`
    answers the next N with 503."""

    def __init__(self, api_key: str = "pdl_sdbx_apikey_sim") -> None:
        self.api_key = api_key
        self.customers: dict[str, Customer] = {}
        self.failures = 0  # the next N API calls answer 503 (an outage)
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add_customer(self, email: str, name: str | None = None) -> Customer:
        customer = Customer(paddle_id("ctm"), email, name)
        self.customers[customer.id] = customer
        return customer

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if not host.startswith("127."):
            raise ValueError("simulators listen on loopback only")
        app = web.Application()
        app.router.add_get("/customers", self._list_customers)
        app.router.add_get("/customers/{customer_id}", self._get_customer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _error(status: int, kind: str, code: str, detail: str) -> web.Response:
        return web.json_response(
            {
                "error": {
                    "type": kind,
                    "code": code,
                    "detail": detail,
                    "documentation_url": f"https://developer.paddle.com/errors/shared/{code}",
                },
                "meta": {"request_id": paddle_id("req")},
            },
            status=status,
        )

    def _refused(self, request: web.Request) -> web.Response | None:
        """The answer to a request without a valid API key, or during an outage."""
        self.requests.append(request.path)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(
                401, "request_error", "authentication_missing", "Authentication header missing"
            )
        if not hmac.compare_digest(auth.removeprefix("Bearer "), self.api_key):
            return self._error(403, "request_error", "forbidden", "Invalid API key")
        if self.failures > 0:
            self.failures -= 1
            return self._error(503, "api_error", "service_unavailable", "Service unavailable")
        return None

    async def _list_customers(self, request: web.Request) -> web.Response:
        """Newest first, `per_page` of them (1..200, default 50), as Paddle pages them."""
        if (refusal := self._refused(request)) is not None:
            return refusal
        raw = request.query.get("per_page", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 200:
            return self._error(
                400, "request_error", "invalid_field", "per_page must be between 1 and 200"
            )
        per_page = int(raw)
        everyone = sorted(self.customers.values(), key=lambda c: c.created_at, reverse=True)
        page = everyone[:per_page]
        more = len(everyone) > per_page
        return web.json_response(
            {
                "data": [customer.as_json() for customer in page],
                "meta": {
                    "request_id": paddle_id("req"),
                    "pagination": {
                        "per_page": per_page,
                        "next": f"{self.url}/customers?after={page[-1].id}&per_page={per_page}"
                        if more
                        else None,
                        "has_more": more,
                        "estimated_total": len(everyone),
                    },
                },
            }
        )

    async def _get_customer(self, request: web.Request) -> web.Response:
        if (refusal := self._refused(request)) is not None:
            return refusal
        customer = self.customers.get(request.match_info["customer_id"])
        if customer is None:
            return self._error(
                404,
                "request_error",
                "entity_not_found",
                f"Entity {request.match_info['customer_id']} not found",
            )
        return web.json_response(
            {"data": customer.as_json(), "meta": {"request_id": paddle_id("req")}}
        )


def envelope(
    event_type: str, data: dict[str, Any], occurred_at: datetime | None = None
) -> dict[str, Any]:
    return {
        "event_id": paddle_id("evt"),
        "event_type": event_type,
        "occurred_at": paddle_time(occurred_at),
        "notification_id": paddle_id("ntf"),
        "data": data,
    }


def subscription_data(
    subscription_id: str,
    customer_id: str,
    status: str,
    price_id: str,
    *,
    custom_data: dict[str, Any] | None = None,
    scheduled_change: dict[str, Any] | None = None,
    canceled_at: str | None = None,
    paused_at: str | None = None,
) -> dict[str, Any]:
    now = paddle_time()
    return {
        "id": subscription_id,
        "status": status,
        "customer_id": customer_id,
        "address_id": paddle_id("add"),
        "business_id": None,
        "currency_code": "USD",
        "created_at": now,
        "updated_at": now,
        "started_at": now,
        "first_billed_at": now,
        "next_billed_at": now,
        "paused_at": paused_at,
        "canceled_at": canceled_at,
        "collection_mode": "automatic",
        "billing_details": None,
        "discount": None,
        "current_billing_period": {"starts_at": now, "ends_at": now},
        "billing_cycle": {"interval": "month", "frequency": 1},
        "scheduled_change": scheduled_change,
        "custom_data": custom_data,
        "items": [
            {
                "status": "active",
                "quantity": 1,
                "recurring": True,
                "created_at": now,
                "updated_at": now,
                "previously_billed_at": now,
                "next_billed_at": now,
                "trial_dates": None,
                "price": {
                    "id": price_id,
                    "product_id": paddle_id("pro"),
                    "description": "OpenClaw Hosted monthly",
                    "unit_price": {"amount": "2900", "currency_code": "USD"},
                    "billing_cycle": {"interval": "month", "frequency": 1},
                },
            }
        ],
    }


def transaction_data(
    transaction_id: str,
    customer_id: str,
    price_id: str,
    *,
    subscription_id: str | None = None,
    custom_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = paddle_time()
    return {
        "id": transaction_id,
        "status": "completed",
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "origin": "web",
        "currency_code": "USD",
        "custom_data": custom_data,
        "created_at": now,
        "updated_at": now,
        "billed_at": now,
        "items": [
            {
                "price_id": price_id,
                "quantity": 1,
                "price": {
                    "id": price_id,
                    "description": "OpenClaw Hosted lifetime",
                    "unit_price": {"amount": "14900", "currency_code": "USD"},
                },
            }
        ],
    }


def adjustment_data(
    transaction_id: str,
    customer_id: str,
    *,
    action: str = "refund",
    status: str = "approved",
    kind: str = "full",
    subscription_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": paddle_id("adj"),
        "action": action,
        "type": kind,
        "status": status,
        "transaction_id": transaction_id,
        "subscription_id": subscription_id,
        "customer_id": customer_id,
        "reason": "requested by customer",
        "currency_code": "USD",
        "created_at": paddle_time(),
        "updated_at": paddle_time(),
    }


@dataclass
class Delivery:
    event_id: str
    status: int
    attempts: int


class WebhookSender:
    """Delivers envelopes like Paddle: signed, at least once, retried on non-2xx."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        max_attempts: int = 3,
        retry_delay_s: float = 0.05,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.now = now  # the receiver's clock may be a test's fake one

    async def post(
        self, body: bytes, *, timestamp: int | None = None, header: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One delivery attempt of exact bytes; returns (status, JSON body or {})."""
        ts = int(self.now()) if timestamp is None else timestamp
        signature = header if header is not None else signature_header(self.secret, body, ts)
        async with (
            ClientSession(timeout=ClientTimeout(total=10)) as session,
            session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json", "Paddle-Signature": signature},
            ) as response,
        ):
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = {}
            return response.status, payload if isinstance(payload, dict) else {}

    async def deliver(self, event: dict[str, Any]) -> Delivery:
        """Deliver until 2xx or `max_attempts`; each retry is a new notification (ntf_)."""
        status = 0
        for attempt in range(1, self.max_attempts + 1):
            body = json.dumps(event).encode()
            status, _ = await self.post(body)
            if 200 <= status < 300:
                return Delivery(event["event_id"], status, attempt)
            event = {**event, "notification_id": paddle_id("ntf")}
            await asyncio.sleep(self.retry_delay_s * attempt)
        return Delivery(event["event_id"], status, self.max_attempts)

    async def deliver_all(
        self, events: list[dict[str, Any]], *, reverse: bool = False, duplicates: int = 0
    ) -> list[Delivery]:
        """Deliver a sequence, optionally in reverse order and with replays of each."""
        ordered = list(reversed(events)) if reverse else list(events)
        deliveries = []
        for event in ordered:
            for _ in range(duplicates + 1):
                replay = {**event, "notification_id": paddle_id("ntf")}
                deliveries.append(await self.deliver(replay))
        return deliveries
