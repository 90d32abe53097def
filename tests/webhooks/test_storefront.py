"""The storefront over real HTTP: valid pages, checkout buttons with the right price ids
and a fresh onboarding token, the lifetime offer gone at the cap, a status endpoint
that tells a stranger nothing, and the headers that keep the pages safe."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.billing import Prices
from core.clock import FakeClock
from core.onboarding import OnboardingStatus, OnboardingTokens
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.paddle import WebhookSender, envelope, paddle_id, subscription_data, transaction_data
from tests.conftest import ADMIN_KEY, LIFETIME_PRICE, MONTHLY_PRICE, WEBHOOK_SECRET
from webhooks.context import WebContext
from webhooks.server import create_app
from webhooks.storefront import landing_csp

BOT = "openclaw_test_bot"


@dataclass
class Storefront:
    client: TestClient[Any, Any]
    context: WebContext
    sender: WebhookSender
    clock: FakeClock

    async def get(self, path: str) -> tuple[int, str, Any]:
        async with self.client.get(path) as response:
            return response.status, await response.text(), response.headers

    async def visit(self) -> tuple[str, dict[str, Any]]:
        """The landing page, the checkout configuration it hands to its script, and the
        onboarding token its checkout buttons carry (as config["onboardingToken"])."""
        status, html, _ = await self.get("/")
        assert status == 200
        match = re.search(
            r'<script type="application/json" id="checkout-config">(.*?)</script>', html
        )
        assert match, "the checkout configuration is missing"
        config: dict[str, Any] = json.loads(match.group(1))
        tokens = set(re.findall(r'data-onboarding-token="([^"]+)"', html))
        assert len(tokens) == 1, f"every checkout button carries the visit's token: {tokens}"
        config["onboardingToken"] = tokens.pop()
        return html, config

    async def status(self, token: str) -> tuple[int, Any]:
        async with self.client.get("/welcome/status", params={"token": token}) as response:
            return response.status, await response.json()

    async def _send(self, event_type: str, data: dict[str, Any]) -> None:
        event = envelope(event_type, data, occurred_at=self.clock.now())
        code, answer = await self.sender.post(json.dumps(event).encode())
        assert code == 200, answer

    async def pay_monthly(self, token: str, customer: str | None = None) -> str:
        subscription = paddle_id("sub")
        custom = {"onboarding_token": token}
        data = subscription_data(
            subscription, customer or paddle_id("ctm"), "active", MONTHLY_PRICE, custom_data=custom
        )
        await self._send("subscription.created", data)
        return subscription

    async def pay_lifetime(self, token: str) -> str:
        transaction = paddle_id("txn")
        data = transaction_data(
            transaction, paddle_id("ctm"), LIFETIME_PRICE, custom_data={"onboarding_token": token}
        )
        await self._send("transaction.completed", data)
        return transaction

    async def set_instance_status(self, status: str) -> None:
        async with self.context.db.transaction() as conn:
            await conn.execute("UPDATE instances SET status = ?", (status,))


async def start_storefront(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    db: Database,
    clock: FakeClock,
    settings: Settings,
    bot_username: str | None = BOT,
) -> Storefront:
    core = build_core(
        db,
        clock,
        timings=PolicyTimings(),
        prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
        lifetime_cap=settings.lifetime_cap,
    )
    context = WebContext(settings, core, bot_username=bot_username)
    client = await aiohttp_client(create_app(context))
    url = str(client.make_url("/api/webhook/paddle"))
    sender = WebhookSender(url, WEBHOOK_SECRET, max_attempts=1, now=lambda: clock.now().timestamp())
    return Storefront(client, context, sender, clock)


@pytest.fixture
def make_storefront(
    aiohttp_client: Any, db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> Callable[..., Awaitable[Storefront]]:
    async def make(bot_username: str | None = BOT, **overrides: Any) -> Storefront:
        values = {"paddle_client_token": "test_0123456789abcdef0123456789a"} | overrides
        return await start_storefront(
            aiohttp_client, db, clock, make_settings(**values), bot_username
        )

    return make


@pytest.fixture
async def storefront(make_storefront: Callable[..., Awaitable[Storefront]]) -> Storefront:
    return await make_storefront()


class StrictHTML(HTMLParser):
    """Well-formedness as the HTML standard's parser would see it, strictly: every
    element closed in order, no <p> left open by a block, no nested interactive
    elements, unique ids, no duplicate attributes."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link"})
    VOID |= {"meta", "source", "track", "wbr"}
    CLOSES_P = frozenset({"address", "article", "aside", "blockquote", "details", "div", "dl"})
    CLOSES_P |= {"fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6"}
    CLOSES_P |= {"header", "hr", "main", "nav", "ol", "p", "pre", "section", "table", "ul"}
    INTERACTIVE = frozenset({"a", "button", "details", "summary"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.doctype = False
        self.tags: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html" and not self.tags

    def _attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.errors.append(f"<{tag}> repeats an attribute: {names}")
        self.ids += [value or "" for name, value in attrs if name == "id"]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._attributes(tag, attrs)
        in_svg = "svg" in self.stack
        if tag in self.CLOSES_P and "p" in self.stack and not in_svg:
            self.errors.append(f"<{tag}> inside <p>")
        if tag in {"a", "button"} and self.INTERACTIVE & set(self.stack) - {"details"}:
            self.errors.append(f"<{tag}> inside another interactive element")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._attributes(tag, attrs)
        if tag not in self.VOID and "svg" not in self.stack:
            self.errors.append(f"<{tag}/> is not a void element")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            self.errors.append(f"</{tag}> closes a void element")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close the open <{self.stack[-1:]}>")
        else:
            self.stack.pop()


def assert_valid_html(html: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(html)
    parser.close()
    assert parser.doctype, "no <!DOCTYPE html> first"
    assert parser.errors == []
    assert parser.stack == [], f"left open: {parser.stack}"
    assert len(parser.ids) == len(set(parser.ids)), f"duplicate ids: {parser.ids}"
    for single in ("html", "head", "body", "title", "main", "h1"):
        assert parser.tags.count(single) == 1, f"{parser.tags.count(single)} <{single}>"
    assert re.search(r'<html lang="en">', html) and '<meta charset="utf-8">' in html
    return parser


def buttons(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-plan="(\w+)" data-price-id="([^"]+)"', html))


def test_the_validator_catches_what_browsers_would_repair() -> None:
    for broken in (
        '<!DOCTYPE html><html lang="en"><head></head><body><p><div></div></p></body></html>',
        '<!DOCTYPE html><html lang="en"><head></head><body><b><i></b></i></body></html>',
        '<!DOCTYPE html><html lang="en"><head></head><body><a><button></button></a></body>',
    ):
        parser = StrictHTML()
        parser.feed(broken)
        assert parser.errors or parser.stack


async def test_landing_page_is_valid_html_with_both_plans(storefront: Storefront) -> None:
    html, config = await storefront.visit()
    assert_valid_html(html)
    assert buttons(html) == {"monthly": MONTHLY_PRICE, "lifetime": LIFETIME_PRICE}
    assert "$29" in html and "/month" in html and "$149" in html
    assert "Limited to 100 customers" in html
    assert '<script src="https://cdn.paddle.com/paddle/v2/paddle.js" defer>' in html
    assert config["clientToken"] == "test_0123456789abcdef0123456789a"
    assert config["environment"] == "production"


async def test_every_visit_gets_its_own_unguessable_token_and_stores_nothing(
    storefront: Storefront,
) -> None:
    tokens = OnboardingTokens(ADMIN_KEY)
    seen = set()
    for _ in range(5):
        _, config = await storefront.visit()
        token = config["onboardingToken"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{48}", token)  # fits Telegram's /start (64)
        assert tokens.minted_here(token)
        assert config["successUrl"] == f"https://openclaw.test/welcome?token={token}"
        seen.add(token)
    assert len(seen) == 5
    customers = await storefront.context.db.fetch_one("SELECT COUNT(*) AS n FROM customers")
    assert customers is not None and customers["n"] == 0  # a visit writes nothing


def test_tokens_are_tied_to_the_key_and_resist_tampering() -> None:
    tokens = OnboardingTokens(ADMIN_KEY)
    token = tokens.mint()
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not tokens.minted_here(flipped)
    assert not tokens.minted_here(token[:-1])
    assert not OnboardingTokens("another-admin-key-0123456789abcdef").minted_here(token)
    assert len({tokens.mint() for _ in range(1000)}) == 1000


async def test_the_lifetime_offer_is_gone_at_the_cap(
    make_storefront: Callable[..., Awaitable[Storefront]],
) -> None:
    storefront = await make_storefront(lifetime_cap=2)
    await storefront.pay_lifetime(OnboardingTokens(ADMIN_KEY).mint())
    html, _ = await storefront.visit()
    assert "Only 1 of 2 left" in html and LIFETIME_PRICE in html
    await storefront.pay_lifetime(OnboardingTokens(ADMIN_KEY).mint())
    html, _ = await storefront.visit()
    assert_valid_html(html)
    assert buttons(html) == {"monthly": MONTHLY_PRICE}
    assert LIFETIME_PRICE not in html and "Lifetime" not in html and "$149" not in html


async def test_status_follows_the_purchase_from_payment_to_ready(storefront: Storefront) -> None:
    _, config = await storefront.visit()
    token = config["onboardingToken"]
    assert await storefront.status(token) == (200, {"status": "waiting_for_payment"})
    await storefront.pay_monthly(token)
    assert await storefront.status(token) == (200, {"status": "provisioning"})
    await storefront.set_instance_status("active")
    assert await storefront.status(token) == (200, {"status": "active"})
    await storefront.set_instance_status("failed")
    assert await storefront.status(token) == (200, {"status": "delayed"})


async def test_the_status_endpoint_tells_a_stranger_nothing(storefront: Storefront) -> None:
    _, config = await storefront.visit()
    real = config["onboardingToken"]
    await storefront.pay_monthly(real)
    forged = real[:24] + OnboardingTokens("not-our-key-0123456789abcdefghij").mint()[24:]
    answers = [
        await storefront.status(token)
        for token in (forged, OnboardingTokens(ADMIN_KEY).mint()[:47] + "-", "x", "", "a" * 65)
    ]
    expected = (404, {"error": {"code": "not_found", "message": "unknown token"}})
    assert answers == [expected] * 5
    async with storefront.client.get("/welcome/status", params={"token": real}) as response:
        assert set(await response.json()) == {"status"}  # one word, nothing about the buyer
        assert response.headers["Cache-Control"] == "no-store"


async def test_status_of_a_repeat_buyer_and_of_a_token_the_bot_replaced(
    storefront: Storefront,
) -> None:
    tokens = OnboardingTokens(ADMIN_KEY)
    first, second = tokens.mint(), tokens.mint()
    customer = paddle_id("ctm")
    await storefront.pay_monthly(first, customer)
    await storefront.pay_monthly(second, customer)  # billing keeps the first token's hash
    await storefront.set_instance_status("active")
    assert await storefront.status(second) == (200, {"status": "active"})
    async with storefront.context.db.transaction() as conn:  # the bot's email link
        await conn.execute("UPDATE customers SET onboarding_token_hash = 'replaced'")
    assert await storefront.status(first) == (200, {"status": "active"})


async def test_welcome_page_shows_the_deep_link_and_its_qr_code(storefront: Storefront) -> None:
    _, config = await storefront.visit()
    token = config["onboardingToken"]
    await storefront.pay_monthly(token)
    status, html, headers = await storefront.get(f"/welcome?token={token}")
    assert status == 200
    assert_valid_html(html)
    assert f'href="https://t.me/{BOT}?start={token}"' in html
    assert '<svg class="qr"' in html and "Your server is being set up" in html
    assert 'data-status="provisioning"' in html
    assert headers["Referrer-Policy"] == "no-referrer"  # the URL holds the token
    assert headers["Cache-Control"] == "no-store"
    assert "noindex" in headers["X-Robots-Tag"]
    assert "cdn.paddle.com" not in headers["Content-Security-Policy"]


async def test_welcome_page_without_the_bot_username_says_the_link_comes_by_email(
    make_storefront: Callable[..., Awaitable[Storefront]],
) -> None:
    storefront = await make_storefront(bot_username=None)
    token = OnboardingTokens(ADMIN_KEY).mint()
    status, html, _ = await storefront.get(f"/welcome?token={token}")
    assert status == 200
    assert_valid_html(html)
    assert "t.me/" not in html and '<svg class="qr"' not in html
    assert "We will email your login link" in html
    assert 'data-status="waiting_for_payment"' in html


async def test_welcome_page_for_an_unknown_token_is_a_404_page(storefront: Storefront) -> None:
    status, html, _ = await storefront.get("/welcome?token=" + "A" * 48)
    assert status == 404
    assert_valid_html(html)
    assert "could not find this order" in html


@pytest.mark.parametrize("environment", ["production", "sandbox"])
async def test_the_csp_allows_paddle_of_the_environment_and_nothing_else(
    make_storefront: Callable[..., Awaitable[Storefront]], environment: str
) -> None:
    storefront = await make_storefront(paddle_environment=environment)
    _, _, headers = await storefront.get("/")
    policy = dict(
        (part.split()[0], part.split()[1:])
        for part in headers["Content-Security-Policy"].split("; ")
    )
    assert headers["Content-Security-Policy"] == landing_csp(environment)
    prefix = "https://sandbox-" if environment == "sandbox" else "https://"
    other = "https://" if environment == "sandbox" else "https://sandbox-"
    assert policy["default-src"] == ["'none'"]
    assert (
        "'unsafe-inline'" not in policy["script-src"]
        and "'unsafe-eval'" not in policy["script-src"]
    )
    assert "https://cdn.paddle.com" in policy["script-src"]  # the loader, in both
    assert policy["frame-src"][0] == f"{prefix}buy.paddle.com"
    assert f"{prefix}api.paddle.com" in policy["connect-src"]
    assert f"{other}buy.paddle.com" not in headers["Content-Security-Policy"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    every_source = [s for sources in policy.values() for s in sources if s.startswith("https:")]
    assert all(s.endswith("paddle.com") and "*" not in s for s in every_source)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Strict-Transport-Security"].startswith("max-age=")


async def test_no_secret_reaches_a_page(storefront: Storefront) -> None:
    settings = storefront.context.settings
    secrets = [
        settings.admin_api_key.get_secret_value(),
        settings.paddle_api_key.get_secret_value(),
        settings.telegram_bot_token.get_secret_value(),
        settings.hcloud_token.get_secret_value(),
        *(s.get_secret_value() for s in settings.paddle_webhook_secrets),
    ]
    token = OnboardingTokens(ADMIN_KEY).mint()
    for path in ("/", f"/welcome?token={token}", "/static/storefront.js"):
        _, text, _ = await storefront.get(path)
        assert not [s for s in secrets if s in text]


async def test_the_storefront_is_rate_limited_like_the_admin_api(
    make_storefront: Callable[..., Awaitable[Storefront]],
) -> None:
    storefront = await make_storefront(admin_rate_limit_per_s=3)
    token = OnboardingTokens(ADMIN_KEY).mint()
    codes = [(await storefront.status(token))[0] for _ in range(5)]  # the clock stands still
    assert codes == [200, 200, 200, 429, 429]
    assert (await storefront.get("/"))[0] == 429


async def test_static_files_are_versioned_and_typed(storefront: Storefront) -> None:
    html, _ = await storefront.visit()
    for url, kind in re.findall(r'(?:href|src)="(/[^"]+\?v=\w+)"(?: type="([^"]+)")?', html):
        async with storefront.client.get(url) as response:
            assert response.status == 200
            assert "immutable" in response.headers["Cache-Control"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.content_type in {"text/css", "text/javascript", "image/svg+xml"}
            assert not kind or response.content_type == kind


async def test_status_enum_is_what_the_page_knows(storefront: Storefront) -> None:
    """Every status the endpoint can answer has words on the welcome page."""
    token = OnboardingTokens(ADMIN_KEY).mint()
    _, html, _ = await storefront.get(f"/welcome?token={token}")
    match = re.search(r'id="status-texts">(.*?)</script>', html)
    assert match and set(json.loads(match.group(1))) == {s.value for s in OnboardingStatus}
