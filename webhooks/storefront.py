"""The storefront: GET / (plans and Paddle checkout), GET /welcome (after payment),
GET /welcome/status (its live status), and the static files they use.

Every visit of / mints an onboarding token (core/onboarding.py: nothing is stored) and
hands it to Paddle's checkout as customData; Paddle sends the buyer to
/welcome?token=..., which shows the Telegram deep link that binds the buyer's chat and
follows provisioning through /welcome/status. That endpoint answers with one word of
status and 404 for a token we never minted, so it tells a guesser nothing. The admin
rate limit (webhooks/server.py) covers all of these routes.

The Content-Security-Policy allows exactly Paddle.js's overlay checkout for the
configured PADDLE_ENVIRONMENT and nothing else (see PADDLE_ORIGINS), and no inline
script at all: our script and styles are files served from here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from core.onboarding import OnboardingTokens, lifetime_spots_left
from core.settings import Settings
from webhooks.context import CONTEXT, WebContext
from webhooks.errors import error_response
from webhooks.storefront_pages import Assets, Checkout, Offer, landing_page
from webhooks.storefront_qr import qr_svg
from webhooks.storefront_welcome import not_found_page, welcome_page

routes = web.RouteTableDef()

_STATIC = Path(__file__).parent / "static"
# Telegram usernames: 5-32 of [A-Za-z0-9_]; anything else is not put in a link.
_BOT_USERNAME = re.compile(r"[A-Za-z0-9_]{5,32}")


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    version: str


def _load(name: str, content_type: str) -> _File:
    body = (_STATIC / name).read_bytes()
    return _File(body, content_type, hashlib.sha256(body).hexdigest()[:12])


_FILES = {
    "/static/storefront.css": _load("storefront.css", "text/css"),
    "/static/storefront.js": _load("storefront.js", "text/javascript"),
    "/favicon.svg": _load("favicon.svg", "image/svg+xml"),
}
ASSETS = Assets(
    css=f"/static/storefront.css?v={_FILES['/static/storefront.css'].version}",
    js=f"/static/storefront.js?v={_FILES['/static/storefront.js'].version}",
    icon=f"/favicon.svg?v={_FILES['/favicon.svg'].version}",
)


@dataclass(frozen=True)
class PaddleOrigins:
    """Where Paddle.js's overlay checkout loads from, per environment.

    The loader is https://cdn.paddle.com/paddle/v2/paddle.js in both environments
    (Paddle's "Include and initialize Paddle.js"); the overlay is an iframe of the
    checkout front end (buy / sandbox-buy), which Paddle.js creates through the
    checkout API (create-checkout / sandbox-create-checkout) and the Paddle API
    (api / sandbox-api), and it pulls its stylesheet, images and error page from the
    environment's CDN. These are the hosts in the environment table of Paddle.js v2.
    """

    scripts: tuple[str, ...]
    cdn: str
    checkout: str
    create: str
    api: str


PADDLE_ORIGINS = {
    "production": PaddleOrigins(
        scripts=("https://cdn.paddle.com",),
        cdn="https://cdn.paddle.com",
        checkout="https://buy.paddle.com",
        create="https://create-checkout.paddle.com",
        api="https://api.paddle.com",
    ),
    "sandbox": PaddleOrigins(
        # The loader always comes from the production CDN; what it loads, from sandbox's.
        scripts=("https://cdn.paddle.com", "https://sandbox-cdn.paddle.com"),
        cdn="https://sandbox-cdn.paddle.com",
        checkout="https://sandbox-buy.paddle.com",
        create="https://sandbox-create-checkout.paddle.com",
        api="https://sandbox-api.paddle.com",
    ),
}


def landing_csp(environment: str) -> str:
    paddle = PADDLE_ORIGINS[environment]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self' " + " ".join(paddle.scripts),
            # Paddle.js positions its overlay with inline styles; CSS cannot run script.
            f"style-src 'self' 'unsafe-inline' {paddle.cdn}",
            f"img-src 'self' {paddle.cdn}",
            f"connect-src 'self' {paddle.api} {paddle.create} {paddle.checkout}",
            f"frame-src {paddle.checkout} {paddle.create} {paddle.cdn}",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


# The welcome and not-found pages load nothing from anywhere else.
WELCOME_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _common_headers(settings: Settings) -> dict[str, str]:
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Resource-Policy": "same-origin",
        # payment stays at its default: Paddle's wallets (Apple/Google Pay) need it.
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=()",
    }
    if settings.public_base_url.startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def _page_headers(settings: Settings, csp: str, *, private: bool) -> dict[str, str]:
    return {
        **_common_headers(settings),
        "Content-Security-Policy": csp,
        # Every landing page holds a fresh token; a welcome page is one buyer's.
        "Cache-Control": "no-store",
        # The welcome URL holds the token: never send it on. The landing page sends
        # only its origin, which Paddle's checkout may use to check the domain.
        "Referrer-Policy": "no-referrer" if private else "strict-origin-when-cross-origin",
        **({"X-Robots-Tag": "noindex, nofollow"} if private else {}),
    }


def _tokens(ctx: WebContext) -> OnboardingTokens:
    return OnboardingTokens(ctx.settings.admin_api_key.get_secret_value())


def _bot_username(ctx: WebContext) -> str | None:
    name = ctx.bot_username
    return name if name and _BOT_USERNAME.fullmatch(name) else None


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    settings = ctx.settings
    token = _tokens(ctx).mint()
    offer = Offer(
        monthly_usd=settings.price_monthly_usd,
        lifetime_usd=settings.price_lifetime_usd,
        monthly_price_id=settings.paddle_price_monthly,
        lifetime_price_id=settings.paddle_price_lifetime,
        lifetime_left=await lifetime_spots_left(ctx.db, settings.lifetime_cap),
        lifetime_cap=settings.lifetime_cap,
        health_minutes=max(1, round(settings.health_check_interval_s / 60)),
    )
    checkout = Checkout(
        client_token=settings.paddle_client_token,
        environment=settings.paddle_environment,
        onboarding_token=token,
        success_url=f"{settings.public_base_url.rstrip('/')}/welcome?token={token}",
    )
    return web.Response(
        text=landing_page(offer, checkout, ASSETS, _bot_username(ctx)),
        content_type="text/html",
        headers=_page_headers(settings, landing_csp(settings.paddle_environment), private=False),
    )


@routes.get("/welcome")
async def welcome(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    token = request.query.get("token", "")
    status = await _tokens(ctx).status(ctx.db, token)
    headers = _page_headers(ctx.settings, WELCOME_CSP, private=True)
    bot = _bot_username(ctx)
    if status is None:
        return web.Response(
            text=not_found_page(ASSETS, bot),
            status=404,
            content_type="text/html",
            headers=headers,
        )
    deep_link = f"https://t.me/{bot}?start={token}" if bot else None
    qr = qr_svg(deep_link, label="QR code of the Telegram link") if deep_link else None
    return web.Response(
        text=welcome_page(status, token, deep_link, qr, ASSETS, bot),
        content_type="text/html",
        headers=headers,
    )


@routes.get("/welcome/status")
async def welcome_status(request: web.Request) -> web.Response:
    """One word: where the purchase stands. 404 for tokens we do not know."""
    ctx = request.app[CONTEXT]
    status = await _tokens(ctx).status(ctx.db, request.query.get("token", ""))
    headers = {**_common_headers(ctx.settings), "Cache-Control": "no-store"}
    if status is None:
        return error_response(404, "not_found", "unknown token", **headers)
    return web.json_response({"status": status.value}, headers=headers)


async def _static(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    file = _FILES[request.path]
    # Versioned URLs never change content; anything else is revalidated soon.
    fresh = request.query.get("v") == file.version
    cache = "public, max-age=31536000, immutable" if fresh else "public, max-age=300"
    return web.Response(
        body=file.body,
        content_type=file.content_type,
        charset="utf-8" if file.content_type.startswith("text/") else None,
        headers={**_common_headers(ctx.settings), "Cache-Control": cache},
    )


for _path in _FILES:
    routes.get(_path)(_static)
