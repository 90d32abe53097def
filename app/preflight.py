"""`check-config` online: each outside service asked whether these settings work.

One row per check, printed in a fixed order after all have run concurrently:

    ✓ what was found
    ✗ what is wrong — fix: what to do about it
    – what was skipped — to enable: what to set

Skipped rows (SMTP when `SMTP_URL` is unset: email is optional) do not fail the run;
any ✗ does. Each network step has a short timeout. Every line goes through
`core.redaction.redact` with the settings' secrets, so no token, key or password is
ever printed, not even inside an error message from a library.

Telegram and Paddle are checked in `app.preflight_apis`, Hetzner in
`app.preflight_hetzner`; the SSH key file and SMTP here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
import asyncssh

from app.preflight_apis import Http, Row, paddle_rows, telegram_rows
from app.preflight_hetzner import hetzner_rows
from bot.channels.email import EmailChannel, SmtpServer
from core.redaction import redact
from core.settings import Settings, secret_values

__all__ = ["Row", "check_config", "render", "run_checks"]

TIMEOUT_S = 5.0


async def run_checks(
    settings: Settings, *, online: bool = True, timeout_s: float = TIMEOUT_S
) -> list[Row]:
    """Every check's rows, in a fixed order; with online=False only the local ones."""
    if not online:
        return ssh_key_rows(settings.ssh_private_key_path)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        http = Http(session, timeout_s)
        groups = await asyncio.gather(
            _guarded("Telegram", telegram_rows(http, settings)),
            _guarded("Hetzner", hetzner_rows(http, settings)),
            _guarded("Paddle", paddle_rows(http, settings)),
            _guarded("SSH key", asyncio.to_thread(ssh_key_rows, settings.ssh_private_key_path)),
            _guarded("SMTP", smtp_rows(settings, timeout_s)),
        )
    return [row for group in groups for row in group]


async def _guarded(name: str, check: Awaitable[list[Row]]) -> list[Row]:
    """A check that breaks in an unforeseen way is one ✗ row, not a traceback."""
    try:
        return await check
    except Exception as error:  # an answer of a shape nobody expected; rendered redacted
        return [
            Row(
                False,
                f"{name}: the check itself failed ({type(error).__name__}: {error})",
                "run check-config again; if it keeps failing, report this line",
            )
        ]


def render(rows: list[Row], secrets: list[str]) -> list[str]:
    """The table's lines and a summary, with every secret replaced."""
    lines = [redact(row.line(), secrets) for row in rows]
    failed = sum(row.ok is False for row in rows)
    skipped = sum(row.ok is None for row in rows)
    passed = len(rows) - failed - skipped
    summary = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    return [*lines, summary]


def check_config(
    settings: Settings,
    *,
    online: bool = True,
    timeout_s: float = TIMEOUT_S,
    out: Callable[[str], None] = print,
) -> int:
    """Run the checks, print the table; 0 when nothing failed, else 1."""
    rows = asyncio.run(run_checks(settings, online=online, timeout_s=timeout_s))
    for line in render(rows, preflight_secrets(settings)):
        out(line)
    return 1 if any(row.ok is False for row in rows) else 0


def preflight_secrets(settings: Settings) -> list[str]:
    """The settings' secrets, plus the SMTP password on its own (as written and decoded;
    like `secret_values`, not when shorter than 6 characters, which would blank out
    ordinary words)."""
    secrets = secret_values(settings)
    url = settings.smtp_url.get_secret_value().strip()
    if url:
        try:
            decoded = SmtpServer.parse(url).password
        except ValueError:
            decoded = None
        secrets += [p for p in (decoded, urlsplit(url).password) if p and len(p) >= 6]
    return secrets


# -- the SSH key -----------------------------------------------------------------------


def ssh_key_rows(path: Path) -> list[Row]:
    """The key the backend reaches customer servers with: there, private, usable."""
    what = f"SSH key {path}"
    if not path.is_file():
        return [
            Row(
                False,
                f"{what}: no such file",
                f"create one with `ssh-keygen -t ed25519 -N '' -f {path}`, or point "
                "SSH_PRIVATE_KEY_PATH at the existing key",
            )
        ]
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return [
            Row(
                False,
                f"{what}: mode {mode:04o}, readable by others",
                f"`chmod 600 {path}`",
            )
        ]
    if not os.access(path, os.R_OK):
        return [
            Row(
                False,
                f"{what}: not readable by this user",
                "make the user that runs openclaw-hosted its owner (`chown`), mode 600",
            )
        ]
    try:
        key = asyncssh.read_private_key(path)
    except (asyncssh.KeyImportError, OSError, ValueError) as error:
        if "passphrase" in str(error).lower():
            return [
                Row(
                    False,
                    f"{what}: protected by a passphrase, which the service cannot type",
                    f"remove it with `ssh-keygen -p -N '' -f {path}`",
                )
            ]
        return [
            Row(
                False,
                f"{what}: not a private key ({type(error).__name__})",
                "point SSH_PRIVATE_KEY_PATH at the private key (not the .pub file)",
            )
        ]
    return [Row(True, f"{what}: {key.get_algorithm()} {key.get_fingerprint()} (mode {mode:04o})")]


# -- SMTP ------------------------------------------------------------------------------

SMTP_FORMAT = "smtp://user:pass@host:587 (STARTTLS) or smtps://user:pass@host:465 (TLS)"


async def smtp_rows(settings: Settings, timeout_s: float) -> list[Row]:
    """Connect, EHLO (STARTTLS when offered), log in, offer the sender, and leave."""
    url = settings.smtp_url.get_secret_value().strip()
    if not url:
        if settings.alert_email:
            return [
                Row(
                    False,
                    "SMTP: ALERT_EMAIL is set but SMTP_URL is not, so alerts cannot be mailed",
                    f"set SMTP_URL={SMTP_FORMAT}, or clear ALERT_EMAIL",
                )
            ]
        return [
            Row(
                None,
                "SMTP: skipped, SMTP_URL is not set (customers who never open the bot get "
                "no setup email)",
                f"set SMTP_URL={SMTP_FORMAT}",
            )
        ]
    try:
        channel = EmailChannel.from_settings(
            settings.smtp_url, settings.email_from, settings.public_base_url
        )
    except ValueError:
        return [Row(False, "SMTP_URL: malformed", f"write it as {SMTP_FORMAT}")]
    assert channel is not None  # the URL is set
    if "@" not in parseaddr(channel.sender)[1]:
        return [
            Row(
                False,
                "EMAIL_FROM: not an email address",
                'write it as an address, e.g. EMAIL_FROM="OpenClaw Hosted <hello@example.com>"',
            )
        ]
    return [await _smtp_session(channel.server, channel.sender, timeout_s)]


async def _smtp_session(server: SmtpServer, sender: str, timeout_s: float) -> Row:
    where = f"SMTP {server.host}:{server.port}"
    client = aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.implicit_tls,
        start_tls=False if server.implicit_tls else None,  # as the email channel does
        timeout=timeout_s,
    )
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        return Row(
            False,
            f"{where}: cannot connect ({_smtp_reason(error)})",
            "check the host and port in SMTP_URL and that this machine may reach them "
            "(many providers block port 25: use 587 or smtps:// on 465)",
        )
    try:
        encrypted = client.get_transport_info("sslcontext") is not None
        tls = ("TLS" if server.implicit_tls else "STARTTLS") if encrypted else "unencrypted"
        if server.username is not None:
            try:
                await client.login(server.username, server.password or "")
            except aiosmtplib.SMTPAuthenticationError as error:
                return Row(
                    False,
                    f"{where}: login refused ({_smtp_reason(error)})",
                    "check the user and password in SMTP_URL (write @ as %40 and : as %3A)",
                )
            except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected):
                raise  # the session broke off: said below
            except aiosmtplib.SMTPException as error:
                return Row(
                    False,
                    f"{where}: cannot log in ({_smtp_reason(error)})",
                    "use smtps:// or a port that offers STARTTLS and AUTH",
                )
        address = parseaddr(sender)[1]
        try:
            await client.mail(address)
            await client.rset()
        except aiosmtplib.SMTPResponseException as error:
            return Row(
                False,
                f"{where}: refuses the sender {address} ({_smtp_reason(error)})",
                "set EMAIL_FROM to an address this SMTP account may send from",
            )
        login = f"logged in as {server.username}" if server.username else "no login"
        return Row(True, f"{where}: {tls}, {login}, sender {address} accepted")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        return Row(
            False,
            f"{where}: the session broke off ({_smtp_reason(error)})",
            "check SMTP_URL against your provider's SMTP settings",
        )
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


def _smtp_reason(error: BaseException) -> str:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{error.code} {error.message[:120]}"
    if isinstance(error, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return "no answer in time"
    return str(error)[:160] or type(error).__name__
