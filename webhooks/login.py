"""The customer's login page: GET and POST `/login/<token>` (DESIGN.md "The setup
message and secrets").

The GET only shows one button: mail scanners and link previews fetch links, and a
fetch must not use up the customer's way in. The POST asks the customer's server for
a fresh one-time owner link and the gateway password, and only then uses the token,
so a server that cannot be reached leaves the link working for another try.

The answer holds secrets: it is never cached, never sent on as a referrer, never
logged, and every value in the page is escaped.
"""

from __future__ import annotations

import logging
import re
from html import escape
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from core.gateway_control import GatewayUnavailable
from core.journal import record_event
from core.login_tokens import LoginGrant, TokenInvalid, TokenProblem
from webhooks.context import CONTEXT, WebContext

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Tokens are secrets.token_urlsafe(32); anything else is not worth a database lookup.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")

_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",  # the path holds the token
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    # Nothing is loaded from anywhere; the form posts only back here; never framed.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:36rem;margin:3rem auto;
padding:0 1rem;color:#1d1d1f;line-height:1.5}
h1{font-size:1.5rem}
button,.button{display:inline-block;font-size:1.1rem;padding:.7rem 1.4rem;border:0;
border-radius:.5rem;background:#2563eb;color:#fff;text-decoration:none;cursor:pointer}
code{display:block;padding:.6rem;background:#f3f4f6;border-radius:.4rem;
word-break:break-all;font-size:.95rem;user-select:all}
.note{color:#555;font-size:.9rem}
"""

_HELP = (
    "To get a new login link, send <b>/link</b> to our Telegram bot, "
    "or reply to your setup email and our support will help."
)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<meta name=referrer content="no-referrer">'
        f"<title>{escape(title)} · OpenClaw Hosted</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=_HEADERS)


def _problem_page(problem: TokenProblem) -> web.Response:
    if problem is TokenProblem.EXPIRED:
        return _page(
            "This login link has expired",
            f"<p>Login links work for a few days only.</p><p>{_HELP}</p>",
            410,
        )
    if problem is TokenProblem.USED:
        return _page(
            "This login link was already used",
            "<p>Each login link works once, so that nobody else can use it later.</p>"
            f"<p>{_HELP}</p>",
            410,
        )
    return _page(
        "Login link not found",
        f"<p>This link is not valid. Check that you copied all of it.</p><p>{_HELP}</p>",
        404,
    )


def _button_page(token: str, *, title: str, intro: str, status: int = 200) -> web.Response:
    action = escape(f"/login/{token}", quote=True)
    return _page(
        title,
        f'{intro}<form method=post action="{action}">'
        "<button type=submit>Show my login link</button></form>"
        "<p class=note>This creates a one-time link to your OpenClaw Control UI and shows "
        "your gateway password. Do it on the device you want to use.</p>",
        status,
    )


def _unavailable(token: str | None, message: str) -> web.Response:
    intro = f"<p>{escape(message)}</p>"
    if token is None:
        return _page("Login is not available right now", intro + f"<p>{_HELP}</p>", 503)
    return _button_page(
        token,
        title="Your server did not answer",
        intro=intro + "<p>Your login link still works: try again in a minute.</p>",
        status=503,
    )


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    return token if _TOKEN.fullmatch(token) else ""


@routes.get("/login/{token}")
async def login_page(request: web.Request) -> web.Response:
    """One button; nothing is used or minted (link scanners GET every link)."""
    ctx = request.app[CONTEXT]
    token = _token(request)
    if not token:
        return _problem_page(TokenProblem.UNKNOWN)
    if ctx.login_tokens is None or ctx.gateway is None:
        return _unavailable(None, "Logging in is switched off on this server.")
    try:
        await ctx.login_tokens.check(token)
    except TokenInvalid as invalid:
        return _problem_page(invalid.problem)
    return _button_page(
        token,
        title="Log in to your OpenClaw",
        intro="<p>Press the button to get your way into your OpenClaw Control UI.</p>",
    )


@routes.post("/login/{token}")
async def login(request: web.Request) -> web.Response:
    """Mint the owner link and read the password first; use the token only after both
    worked, so a server that is down does not cost the customer their link."""
    ctx = request.app[CONTEXT]
    token = _token(request)
    if not token:
        return _problem_page(TokenProblem.UNKNOWN)
    if ctx.login_tokens is None or ctx.gateway is None:
        return _unavailable(None, "Logging in is switched off on this server.")
    try:
        grant = await ctx.login_tokens.check(token)
    except TokenInvalid as invalid:
        return _problem_page(invalid.problem)
    try:
        link = await ctx.gateway.owner_link(grant.instance_id)
        password = await ctx.gateway.gateway_password(grant.instance_id)
    except GatewayUnavailable as error:
        log.info("login: gateway unavailable", extra={"instance_id": grant.instance_id})
        return _unavailable(token, str(error) or "Your server could not be reached.")
    try:
        # Atomic: of two presses at once, only one gets past this.
        grant = await ctx.login_tokens.consume(token)
    except TokenInvalid as invalid:
        return _problem_page(invalid.problem)
    await _record(ctx, grant)
    return _secrets_page(link, password)


async def _record(ctx: WebContext, grant: LoginGrant) -> None:
    # Who logged in and when, never what they were shown.
    async with ctx.db.transaction() as conn:
        await record_event(
            conn,
            ctx.clock.now(),
            "web",
            "login_link_used",
            instance_id=grant.instance_id,
            customer_id=grant.customer_id,
        )


def _control_ui(link: str) -> str:
    parts = urlsplit(link)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def _secrets_page(link: str, password: str) -> web.Response:
    href = escape(link, quote=True)
    return _page(
        "Your OpenClaw is ready",
        '<p><a class=button href="' + href + '" rel="noreferrer noopener">'
        "Open my Control UI</a></p>"
        "<p class=note>This button logs this browser in as the owner. It works once, "
        "within about 10 minutes. Later, open the Control UI address below and sign in "
        "with your password.</p>"
        "<h2>Control UI address</h2>"
        f"<code>{escape(_control_ui(link))}</code>"
        "<h2>Gateway password</h2>"
        f"<code>{escape(password)}</code>"
        "<p class=note>For the OpenClaw apps and CLI, and for browsers you add later. "
        "Keep it private: whoever has it controls your OpenClaw. This page is shown only "
        "once; save the password in your password manager now.</p>",
    )
