"""The login page over real HTTP: GET uses nothing, POST shows the owner link and the
password once, and a server that is down leaves the token usable."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.clock import FakeClock
from core.gateway_control import GatewayUnavailable
from core.login_tokens import LoginTokens
from core.models import ACTOR_API
from db.connection import Database
from tests.conftest import Backend

LINK = 'http://203.0.113.7:18789/#bootstrapToken=boot<strap>&"tok'
PASSWORD = "pw-<script>alert(1)</script>-&-'\"-0123456789abcdef"


@dataclass
class FakeGateway:
    """The edge to the customer's server: what SshGatewayControl answers, or its failure."""

    down: bool = False
    asked: list[str] = field(default_factory=list)

    async def owner_link(self, instance_id: str) -> str:
        self.asked.append(instance_id)
        if self.down:
            raise GatewayUnavailable("Your OpenClaw server could not be reached <just now>.")
        return LINK

    async def gateway_password(self, instance_id: str) -> str:
        if self.down:
            raise GatewayUnavailable("unreachable")
        return PASSWORD


@dataclass
class Login:
    client: TestClient[Any, Any]
    tokens: LoginTokens
    gateway: FakeGateway
    instance_id: str
    db: Database

    async def get(self, token: str) -> tuple[int, str, Any]:
        async with self.client.get(f"/login/{token}") as response:
            return response.status, await response.text(), response.headers

    async def post(self, token: str) -> tuple[int, str, Any]:
        async with self.client.post(f"/login/{token}") as response:
            return response.status, await response.text(), response.headers


@pytest.fixture
async def login(backend: Backend, clock: FakeClock) -> Login:
    ctx = backend.context
    gateway = FakeGateway()
    ctx.login_tokens = LoginTokens(ctx.db, clock, ttl=timedelta(days=7))
    ctx.gateway = gateway
    result = await ctx.core.admin.provision("ada@example.com", "Ada", None, ACTOR_API)
    return Login(backend.client, ctx.login_tokens, gateway, result.instance_id, ctx.db)


async def test_get_shows_one_button_and_uses_nothing(login: Login) -> None:
    token = await login.tokens.mint(login.instance_id)
    for _ in range(3):  # a mail scanner, a link preview, the customer
        status, html, headers = await login.get(token)
        assert status == 200
        assert html.count("<button") == 1 and 'method=post action="/login/' in html
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert login.gateway.asked == []  # nothing minted on the server either
    await login.tokens.check(token)  # still valid


async def test_post_shows_link_and_password_once(login: Login) -> None:
    token = await login.tokens.mint(login.instance_id)
    status, html, headers = await login.post(token)
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # Everything is escaped: the link in an attribute, the password as text.
    assert 'href="http://203.0.113.7:18789/#bootstrapToken=boot&lt;strap&gt;&amp;&quot;tok"' in html
    assert "pw-&lt;script&gt;alert(1)&lt;/script&gt;-&amp;-&#x27;&quot;-0123456789abcdef" in html
    assert "<script>" not in html
    assert "http://203.0.113.7:18789/</code>" in html  # the Control UI address, no token
    assert login.gateway.asked == [login.instance_id]

    status, html, _ = await login.post(token)
    assert status == 410 and "already used" in html and "/link" in html
    assert PASSWORD not in html and "bootstrapToken" not in html
    status, html, _ = await login.get(token)
    assert status == 410 and "already used" in html
    assert login.gateway.asked == [login.instance_id]  # nothing minted for a used token

    events = await login.db.fetch_all(
        "SELECT actor, payload FROM events WHERE event_type = 'login_link_used'"
    )
    assert [(e["actor"], e["payload"]) for e in events] == [("web", None)]


async def test_expired_and_unknown_tokens_get_clear_pages(login: Login, clock: FakeClock) -> None:
    token = await login.tokens.mint(login.instance_id)
    clock.advance(timedelta(days=7, seconds=1))
    for send in (login.get, login.post):
        status, html, headers = await send(token)
        assert status == 410 and "expired" in html and "/link" in html
        assert headers["Content-Type"].startswith("text/html")
    for bogus in ("x" * 43, "short", "a" * 200, "%3Cscript%3E" + "a" * 20):
        for send in (login.get, login.post):
            status, html, _ = await send(bogus)
            assert status == 404 and "not valid" in html and "<script>" not in html
    assert login.gateway.asked == []


async def test_gateway_down_is_503_and_the_token_still_works(login: Login) -> None:
    token = await login.tokens.mint(login.instance_id)
    login.gateway.down = True
    status, html, headers = await login.post(token)
    assert status == 503
    assert "still works" in html and "&lt;just now&gt;" in html
    assert html.count("<button") == 1  # try again from the same page
    assert headers["Cache-Control"] == "no-store"
    await login.tokens.check(token)  # not used up

    login.gateway.down = False
    status, html, _ = await login.post(token)
    assert status == 200 and "bootstrapToken" in html


async def test_without_gateway_control_login_is_off(login: Login, backend: Backend) -> None:
    token = await login.tokens.mint(login.instance_id)
    backend.context.gateway = None
    status, html, _ = await login.post(token)
    assert status == 503 and "switched off" in html
    backend.context.gateway = login.gateway
    await login.tokens.check(token)


async def test_login_pages_are_rate_limited(login: Login) -> None:
    statuses = []
    for _ in range(15):  # a burst of 10 per client, then 429
        async with login.client.get("/login/" + "b" * 43) as response:
            statuses.append(response.status)
    assert statuses == [404] * 10 + [429] * 5  # the fake clock never refills the bucket
