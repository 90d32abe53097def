"""Email delivery over SMTP (aiosmtplib): one message, plain text and simple HTML.

`SMTP_URL` is `smtp://user:pass@host:port` (STARTTLS when the server offers it) or
`smtps://…` (TLS from the start). Its password never appears in an outcome or a log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib
from pydantic import SecretStr

from bot.channels import Outcome, RetryLater, Sent, Unreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # Never echo the URL: it carries the password.
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:port or smtps://…")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=tls,
        )


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


class EmailChannel:
    def __init__(self, server: SmtpServer, sender: str, *, timeout_s: float = 30.0) -> None:
        self.server = server
        self.sender = sender
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(
        cls, smtp_url: SecretStr, email_from: str, public_base_url: str
    ) -> EmailChannel | None:
        """None when `SMTP_URL` is unset: the sender then treats email as unavailable."""
        url = smtp_url.get_secret_value().strip()
        if not url:
            return None
        host = urlsplit(public_base_url).hostname or "localhost"
        return cls(SmtpServer.parse(url), email_from or f"OpenClaw Hosted <noreply@{host}>")

    def build(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.server.host)
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return message

    async def send(self, email: Email) -> Outcome:
        if not email.to or "@" not in email.to:
            return Unreachable("no email address")
        server = self.server
        try:
            await aiosmtplib.send(
                self.build(email),
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                start_tls=False if server.implicit_tls else None,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            if codes and all(code >= 500 for code in codes):
                return Unreachable(f"address refused ({', '.join(map(str, codes))})")
            return RetryLater(f"address deferred ({', '.join(map(str, codes))})")
        except aiosmtplib.SMTPResponseException as error:
            # 4xx is "try later"; a 5xx to the whole transaction (auth, sender, size) is a
            # configuration problem an operator fixes, so the message waits rather than dies.
            return RetryLater(f"SMTP {error.code}: {error.message[:200]}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return RetryLater(f"SMTP: {type(error).__name__}")
        return Sent()
