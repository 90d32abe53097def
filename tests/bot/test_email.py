"""Email over real SMTP (aiosmtpd on loopback): the channel, and the customer's setup email."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from bot.channels import RetryLater, Sent, Unreachable
from bot.channels.email import Email, EmailChannel, SmtpServer
from core.clock import FakeClock
from core.ids import token_hash
from core.settings import Settings
from db.connection import Database
from tests.bot.outbox_world import CONTROL_UI, Mailbox, World, free_port, make_world


@pytest.fixture
async def world(
    db: Database, clock: FakeClock, make_settings: Callable[..., Settings]
) -> AsyncIterator[World]:
    async with make_world(db, clock, make_settings) as built:
        yield built


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def test_smtp_url_parsing() -> None:
    server = SmtpServer.parse("smtp://mailer%40example.test:p%40ss:w@mail.example.test:587")
    assert (server.host, server.port, server.implicit_tls) == ("mail.example.test", 587, False)
    assert (server.username, server.password) == ("mailer@example.test", "p@ss:w")
    assert SmtpServer.parse("smtps://u:p@mail.example.test").port == 465
    assert SmtpServer.parse("smtp://mail.example.test").port == 25
    with pytest.raises(ValueError) as bad:
        SmtpServer.parse("http://user:hunter2@mail.example.test")
    assert "hunter2" not in str(bad.value)


def test_no_smtp_url_means_no_email_channel() -> None:
    assert EmailChannel.from_settings(SecretStr(""), "", "https://openclaw.test") is None
    channel = EmailChannel.from_settings(SecretStr("smtp://h:25"), "", "https://openclaw.test")
    assert channel is not None and channel.sender == "OpenClaw Hosted <noreply@openclaw.test>"


async def test_a_message_has_plain_text_and_html(world: World) -> None:
    assert world.outbox.email is not None
    outcome = await world.outbox.email.send(
        Email("ann@example.test", "Hello", "plain words", "<p>html words</p>")
    )
    assert outcome == Sent()
    [message] = world.mailbox.messages
    assert message["From"] == "OpenClaw Hosted <hello@openclaw.test>"
    assert message["Subject"] == "Hello" and message["Message-ID"]
    assert message.get_content_type() == "multipart/alternative"
    plain, html = parts(message)
    assert plain.strip() == "plain words" and "<p>html words</p>" in html


async def test_refused_address_is_permanent_and_a_dead_server_is_transient(world: World) -> None:
    channel = world.outbox.email
    assert channel is not None
    world.mailbox.refuse.add("gone@example.test")
    refused = await channel.send(Email("gone@example.test", "s", "t", "<p>h</p>"))
    assert isinstance(refused, Unreachable) and "550" in refused.reason
    assert isinstance(await channel.send(Email("", "s", "t", "h")), Unreachable)
    down = EmailChannel(SmtpServer("127.0.0.1", free_port(), None, None, False), "a@b.test")
    assert isinstance(await down.send(Email("ann@example.test", "s", "t", "h")), RetryLater)


async def test_credentials_from_the_url_log_in() -> None:
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append((data.login, data.password))
        return AuthResult(success=data.password == b"p@ss")

    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=authenticator,
        auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        url = SecretStr(f"smtp://mailer:p%40ss@127.0.0.1:{port}")
        channel = EmailChannel.from_settings(url, "x@openclaw.test", "https://openclaw.test")
        assert channel is not None
        assert await channel.send(Email("ann@example.test", "s", "t", "h")) == Sent()
        assert seen == [(b"mailer", b"p@ss")] and len(mailbox.messages) == 1
    finally:
        controller.stop()


async def test_the_setup_email_of_a_customer_without_telegram(world: World) -> None:
    customer_id, instance_id = await world.customer("ann@example.test")
    await world.setup(customer_id, instance_id)
    assert await world.outbox.send_due() == 1
    [message] = world.mailbox.to("ann@example.test")
    assert message["Subject"] == "OpenClaw Hosted: Your OpenClaw gateway is ready"
    plain, html = parts(message)
    for body in (plain, html):
        assert CONTROL_UI in body
        assert "never-in-a-message" not in body  # the password is shown only by the login page
    login = re.findall(r"https://openclaw\.test/login/([A-Za-z0-9_-]+)", plain)
    assert len(set(login)) == 1 and f"/login/{login[0]}" in html
    grant = await world.ctx.login_tokens.check(login[0])
    assert (grant.customer_id, grant.instance_id) == (customer_id, instance_id)
    deep = re.findall(r"https://t\.me/openclaw_hosted_bot\?start=([A-Za-z0-9_-]+)", plain)
    assert len(deep) == 1 and f"?start={deep[0]}" in html and len(deep[0]) <= 64
    customer = await world.db.fetch_one("SELECT * FROM customers WHERE id = ?", (customer_id,))
    assert customer is not None and customer["onboarding_token_hash"] == token_hash(deep[0])
    assert (await world.rows("sent"))[-1]["last_error"] == "by email"


async def test_a_refused_customer_address_fails_the_message_and_tells_ops(world: World) -> None:
    customer_id, instance_id = await world.customer("typo@example.test")
    world.mailbox.refuse.add("typo@example.test")
    await world.tell(customer_id, "past_due", instance_id, {"days": "7"})
    await world.drain()
    failed = await world.rows("failed")
    assert len(failed) == 1 and "address refused" in failed[0]["last_error"]
    [alert] = world.ops_texts()
    assert alert.startswith("📭 customer " + customer_id)
