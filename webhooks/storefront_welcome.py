"""The storefront's pages after checkout: the welcome page, which follows provisioning
and shows the Telegram deep link, and the page for an order we do not know."""

from __future__ import annotations

from html import escape

from core.onboarding import OnboardingStatus
from webhooks.storefront_pages import (
    CHECK,
    Assets,
    json_block,
    page_head,
    site_footer,
    site_header,
    support_line,
)

STATUS_TEXT = {
    OnboardingStatus.WAITING_FOR_PAYMENT: (
        "Confirming your payment",
        "Paddle is confirming your payment. This usually takes a few seconds.",
    ),
    OnboardingStatus.PROVISIONING: (
        "Your server is being set up",
        "Payment received. We are creating and installing your server; this takes about "
        "five minutes. You can close this page: we will message you.",
    ),
    OnboardingStatus.ACTIVE: (
        "Your server is ready",
        "Your OpenClaw is up and running. Your login link is waiting in Telegram, or in "
        "your email if you have not connected Telegram.",
    ),
    OnboardingStatus.SUSPENDED: (
        "Your server is paused",
        "This server is suspended. Message us on Telegram or reply to our email and we "
        "will sort it out.",
    ),
    OnboardingStatus.DELAYED: (
        "Setup is taking longer than usual",
        "Something slowed your setup down. Our team has been alerted and is on it; you "
        "will get a message as soon as your server is ready.",
    ),
    OnboardingStatus.ENDED: (
        "This server has been shut down",
        "Message us on Telegram or by email if you would like it back.",
    ),
}

_STEPS = [
    ("payment", "Payment confirmed"),
    ("server", "Server created and installed"),
    ("ready", "Ready to use"),
]


def _progress(status: OnboardingStatus) -> str:
    reached = {
        OnboardingStatus.WAITING_FOR_PAYMENT: 0,
        OnboardingStatus.PROVISIONING: 1,
        OnboardingStatus.DELAYED: 1,
    }.get(status, 3)
    items = "".join(
        f'<li data-step="{key}" class="{"done" if i < reached else "todo"}">'
        f"{CHECK}{escape(label)}</li>"
        for i, (key, label) in enumerate(_STEPS)
    )
    return f'<ol class="progress" id="progress">{items}</ol>'


def welcome_page(
    status: OnboardingStatus,
    token: str,
    deep_link: str | None,
    qr_svg: str | None,
    assets: Assets,
    bot_username: str | None,
) -> str:
    title, text = STATUS_TEXT[status]
    texts = {s.value: {"title": t, "text": x} for s, (t, x) in STATUS_TEXT.items()}
    config = json_block("welcome-config", {"token": token, "statusUrl": "/welcome/status"})
    texts_block = json_block("status-texts", texts)
    if deep_link and qr_svg:
        href = escape(deep_link, quote=True)
        telegram = (
            '<section class="panel telegram"><div class="telegram-copy">'
            "<h2>Get your login link on Telegram</h2>"
            "<p>Open our bot and press Start. It connects this purchase to your Telegram "
            "and sends your login link the moment your server is ready.</p>"
            f'<p><a class="button" id="telegram-link" href="{href}" rel="noopener noreferrer">'
            "Open Telegram</a></p>"
            '<p class="note">The link works once. On a computer? Scan the code with your '
            "phone.</p></div>"
            f'<div class="qr-box">{qr_svg}</div></section>'
        )
    else:
        telegram = (
            '<section class="panel telegram"><div class="telegram-copy">'
            "<h2>Your login link is on its way</h2>"
            "<p>We will email your login link, and a link to connect Telegram, as soon as "
            "your server is ready.</p></div></section>"
        )
    body = (
        '<main class="wrap narrow welcome">'
        '<p class="eyebrow">Thank you for your order</p>'
        f'<h1 id="status-title">{escape(title)}</h1>'
        f'<section class="panel status" data-status="{status.value}" id="setup-status">'
        f'<p id="status-text" aria-live="polite">{escape(text)}</p>'
        f"{_progress(status)}</section>"
        f"{telegram}</main>"
    )
    return (
        page_head("Thank you: your OpenClaw server is being set up", title, assets, paddle=False)
        + '<body class="page-welcome">'
        + site_header(nav=False)
        + body
        + site_footer(support_line(bot_username))
        + config
        + texts_block
        + "</body></html>"
    )


def not_found_page(assets: Assets, bot_username: str | None) -> str:
    return (
        page_head("Order not found · OpenClaw Hosted", "Order not found", assets, paddle=False)
        + '<body class="page-welcome">'
        + site_header(nav=False)
        + '<main class="wrap narrow welcome"><h1>We could not find this order</h1>'
        '<section class="panel"><p>Check that you opened the whole link from your '
        "checkout. If you have paid, your login link will also arrive by email.</p>"
        '<p><a class="button" href="/">Back to the home page</a></p></section></main>'
        + site_footer(support_line(bot_username))
        + "</body></html>"
    )
