"""The storefront's HTML: the landing page, and the parts every storefront page shares.

Plain HTML with every value escaped; the look lives in static/storefront.css and the
behaviour in static/storefront.js, so the Content-Security-Policy needs no inline
script or style of ours. What the checkout needs travels in a JSON data block, which
browsers never execute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

PADDLE_JS = "https://cdn.paddle.com/paddle/v2/paddle.js"


@dataclass(frozen=True)
class Assets:
    """Versioned URLs of our static files (their content hash busts caches)."""

    css: str
    js: str
    icon: str


@dataclass(frozen=True)
class Offer:
    monthly_usd: float
    lifetime_usd: float
    monthly_price_id: str
    lifetime_price_id: str
    lifetime_left: int  # 0: the lifetime offer is gone
    lifetime_cap: int
    health_minutes: int


@dataclass(frozen=True)
class Checkout:
    client_token: str
    environment: str
    onboarding_token: str
    success_url: str


def money(amount: float) -> str:
    return f"${amount:,.0f}" if amount == int(amount) else f"${amount:,.2f}"


def page_head(title: str, description: str, assets: Assets, *, paddle: bool) -> str:
    scripts = f'<script src="{PADDLE_JS}" defer></script>' if paddle else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<meta name="description" content="{escape(description)}">'
        '<meta name="theme-color" content="#ffffff">'
        f'<link rel="icon" href="{assets.icon}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{assets.css}">'
        f'{scripts}<script src="{assets.js}" defer></script></head>'
    )


LOGO = (
    '<svg class="logo-mark" viewBox="0 0 32 32" aria-hidden="true">'
    '<rect width="32" height="32" rx="8" fill="#e4572e"></rect>'
    '<g fill="none" stroke="#fff" stroke-width="3" stroke-linecap="round" '
    'stroke-linejoin="round"><path d="M22.5 9.5A9 9 0 1 0 22.5 22.5"></path>'
    '<path d="M22.5 9.5 16.5 16l6 6.5"></path></g></svg>'
)

CHECK = (
    '<svg class="tick" viewBox="0 0 20 20" aria-hidden="true"><path d="M8.2 13.6 4.8 10.2l-1.3'
    ' 1.3 4.7 4.7 9-9-1.3-1.3z" fill="currentColor"></path></svg>'
)


def site_header(nav: bool) -> str:
    links = (
        '<nav class="nav" aria-label="Main"><a href="#how">How it works</a>'
        '<a href="#pricing">Pricing</a><a href="#faq">FAQ</a>'
        '<a class="button button-small" href="#pricing">Get started</a></nav>'
        if nav
        else ""
    )
    return (
        '<header class="site-header"><div class="wrap header-row">'
        f'<a class="brand" href="/">{LOGO}<span>OpenClaw Hosted</span></a>{links}'
        "</div></header>"
    )


def site_footer(support: str) -> str:
    return (
        '<footer class="site-footer"><div class="wrap footer-row">'
        f'<p><span class="brand-small">{LOGO}OpenClaw Hosted</span><span>{support}</span></p>'
        '<p class="fineprint">Our order process is conducted by our online reseller '
        "Paddle.com. Paddle.com is the Merchant of Record for all our orders and handles "
        "payments, taxes and invoices. OpenClaw is an open-source project; this service "
        "runs it for you and is not affiliated with its authors.</p>"
        "</div></footer>"
    )


def support_line(bot_username: str | None) -> str:
    if not bot_username:
        return "Questions? Reply to any email from us."
    bot = escape(bot_username)
    return f'Questions? Message <a href="https://t.me/{bot}">@{bot}</a> on Telegram.'


def _features(offer: Offer) -> str:
    items = [
        (
            "Your own isolated server",
            "A dedicated cloud server runs your OpenClaw and nothing else. No neighbours, "
            "no shared disks, your data stays on your machine.",
        ),
        (
            "Ready in minutes",
            "Pay, and the server is created, installed and hardened for you. Most are "
            "ready about five minutes later.",
        ),
        (
            "Watched around the clock",
            f"Health checks every {offer.health_minutes} minutes, automatic restarts and "
            "weekly snapshots, so it keeps working while you sleep.",
        ),
        (
            "Support from real people",
            "Ask us on Telegram or by email. The people who run the servers answer.",
        ),
    ]
    cards = "".join(
        f'<article class="feature"><h3>{escape(title)}</h3><p>{escape(text)}</p></article>'
        for title, text in items
    )
    return f'<section class="section"><div class="wrap grid-4">{cards}</div></section>'


def _steps(offer: Offer) -> str:
    plans = (
        "Monthly, or pay once while the lifetime offer lasts."
        if offer.lifetime_left > 0
        else "Monthly, with no commitment: cancel anytime."
    )
    steps = [
        ("Choose a plan", plans),
        ("Pay securely", "Secure checkout by Paddle, who also handle tax and invoices."),
        ("Open Telegram", "Tap the link we show you. Your login arrives there when ready."),
    ]
    items = "".join(
        f'<li class="step"><span class="step-number">{n}</span><h3>{escape(title)}</h3>'
        f"<p>{escape(text)}</p></li>"
        for n, (title, text) in enumerate(steps, 1)
    )
    return (
        '<section class="section section-tint" id="how"><div class="wrap">'
        '<h2 class="section-title">How it works</h2>'
        f'<ol class="steps">{items}</ol></div></section>'
    )


_INCLUDED = [
    "A dedicated cloud server, only yours",
    "OpenClaw installed, secured and monitored",
    "Automatic restarts and weekly snapshots",
    "Login link by Telegram or email",
    "Support on Telegram and email",
]


def _plan(
    *,
    plan: str,
    name: str,
    price: str,
    period: str,
    note: str,
    price_id: str,
    token: str,
    badge: str = "",
) -> str:
    included = "".join(f"<li>{CHECK}{escape(item)}</li>" for item in _INCLUDED)
    badge_html = f'<p class="badge">{escape(badge)}</p>' if badge else ""
    return (
        f'<article class="plan plan-{plan}">{badge_html}<h3>{escape(name)}</h3>'
        f'<p class="price"><span class="amount">{escape(price)}</span>'
        f'<span class="period">{escape(period)}</span></p>'
        f'<p class="plan-note">{escape(note)}</p><ul class="included">{included}</ul>'
        f'<button class="button button-block checkout" type="button" data-plan="{plan}" '
        f'data-price-id="{escape(price_id, quote=True)}" '
        f'data-onboarding-token="{escape(token, quote=True)}" disabled>'
        f"Get {escape(name)}</button>"
        "</article>"
    )


def _pricing(offer: Offer, token: str) -> str:
    plans = _plan(
        plan="monthly",
        name="Monthly",
        price=money(offer.monthly_usd),
        period="/month",
        note="Billed monthly. Cancel anytime.",
        price_id=offer.monthly_price_id,
        token=token,
    )
    if offer.lifetime_left > 0:
        plans += _plan(
            plan="lifetime",
            name="Lifetime",
            price=money(offer.lifetime_usd),
            period="once",
            note="Pay once, use it for the lifetime of the service.",
            price_id=offer.lifetime_price_id,
            token=token,
            badge=(
                f"Limited to {offer.lifetime_cap} customers"
                if offer.lifetime_left >= offer.lifetime_cap
                else f"Only {offer.lifetime_left} of {offer.lifetime_cap} left"
            ),
        )
    single = "" if offer.lifetime_left > 0 else " plans-single"
    return (
        '<section class="section" id="pricing"><div class="wrap">'
        '<h2 class="section-title">Simple pricing</h2>'
        '<p class="section-lead">Prices in US dollars; tax is added at checkout where it '
        "applies.</p>"
        f'<div class="plans{single}">{plans}</div>'
        '<p class="checkout-notice" id="checkout-notice" role="status" hidden></p>'
        "</div></section>"
    )


def _faq() -> str:
    items = [
        (
            "What is OpenClaw?",
            "OpenClaw is an open-source AI assistant that you run yourself: it connects to "
            "your chat apps and works for you around the clock. We run it for you, on a "
            "server of your own.",
        ),
        (
            "How do I get in after paying?",
            "The page after checkout shows a Telegram link. Open it and our bot sends you a "
            "login link as soon as your server is ready. No Telegram? The login link comes "
            "by email.",
        ),
        (
            "Who can see my data?",
            "Your OpenClaw runs on a server nobody else uses. We keep maintenance access "
            "for health checks, backups and support, and use it for nothing else.",
        ),
        (
            "Can I cancel?",
            "Yes. Monthly plans can be cancelled at any time from Paddle's receipt email; "
            "the server keeps running until the end of the paid month.",
        ),
        (
            "Who handles the payment?",
            "Paddle, our Merchant of Record. They process the payment, add the right sales "
            "tax or VAT and send you the invoice.",
        ),
    ]
    entries = "".join(
        f"<details><summary>{escape(q)}</summary><p>{escape(a)}</p></details>" for q, a in items
    )
    return (
        '<section class="section section-tint" id="faq"><div class="wrap narrow">'
        f'<h2 class="section-title">Questions</h2>{entries}</div></section>'
    )


def json_block(element_id: str, value: dict[str, Any]) -> str:
    # "<" escaped so that the data can never close the script element.
    data = json.dumps(value).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{data}</script>'


def landing_page(offer: Offer, checkout: Checkout, assets: Assets, bot_username: str | None) -> str:
    config = json_block(
        "checkout-config",
        {
            "clientToken": checkout.client_token,
            "environment": checkout.environment,
            "successUrl": checkout.success_url,
        },
    )
    journey = "".join(
        f'<li class="done">{CHECK}{escape(line)}</li>'
        for line in (
            "Payment received",
            "Your server created",
            "OpenClaw installed and hardened",
            "Health check passed",
        )
    )
    hero = (
        '<section class="hero"><div class="wrap hero-row"><div class="hero-copy">'
        '<p class="eyebrow">Managed OpenClaw hosting</p>'
        "<h1>Your own OpenClaw, running in minutes.</h1>"
        '<p class="lead">We set up OpenClaw on a private server that is yours alone, keep it '
        "healthy and back it up. You just use it.</p>"
        '<p class="hero-actions"><a class="button" href="#pricing">See plans, from '
        f"{escape(money(offer.monthly_usd))}/month</a>"
        '<a class="button button-ghost" href="#how">How it works</a></p>'
        '<ul class="trust"><li>Isolated server</li><li>Ready in about 5 minutes</li>'
        "<li>Telegram and email support</li></ul></div>"
        '<div class="hero-card" aria-label="What happens after you pay">'
        '<p class="card-title">After you pay</p>'
        f'<ol class="journey">{journey}'
        f'<li class="next">{CHECK}Login link sent to your Telegram</li></ol>'
        '<p class="card-foot">Usually done in about five minutes.</p></div>'
        "</div></section>"
    )
    pricing = _pricing(offer, checkout.onboarding_token)
    sections = hero + _features(offer) + _steps(offer) + pricing + _faq()
    return (
        page_head(
            "OpenClaw Hosted: your own OpenClaw server, ready in minutes",
            "Managed OpenClaw on a dedicated server of your own. Ready in minutes, "
            "monitored around the clock, with Telegram and email support.",
            assets,
            paddle=True,
        )
        + '<body class="page-landing">'
        + site_header(nav=True)
        + f"<main>{sections}</main>"
        + site_footer(support_line(bot_username))
        + config
        + "</body></html>"
    )
