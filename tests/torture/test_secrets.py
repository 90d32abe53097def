"""Secrets: the whole journey with recognisable secrets, against the real service
process; then every log line, the database and a backup of it, the provision logs and
every message the ops group got are scanned for each secret in plain, URL-encoded,
base64 and JSON-escaped forms: zero occurrences. Files with secrets are 0600, and the
admin key is compared in constant time."""

from __future__ import annotations

import ast
import base64
import inspect
import json
import os
import re
import signal
import sqlite3
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, quote_plus

import pytest

from app.demo_view import DemoView
from app.journey import Journey
from app.simulators import Simulators
from core.settings import Settings
from monitor.db_backup import backup_database
from tests.app.test_demo import free_port
from tests.e2e.test_journey import SHORT_DAYS, start_service
from tests.torture.harness import Report, address_pool, needs_root
from webhooks import admin

WEBHOOK_SECRET = "pdl_ntfset_TortureWebhookSecret7Q2x9KzP4mWvB8nR"
ADMIN_API_KEY = "TortureAdminKey_h3R8xQ2vN7mK4pZ9wB6yT1"


def forms(secret: str) -> dict[str, bytes]:
    return {
        "plain": secret.encode(),
        "url": quote(secret, safe="").encode(),
        "url+": quote_plus(secret).encode(),
        "base64": base64.b64encode(secret.encode()),
        "base64url": base64.urlsafe_b64encode(secret.encode()),
        "json": json.dumps(secret)[1:-1].encode(),
    }


def read(path: Path) -> bytes:
    return path.read_bytes()


def scan(places: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    found = []
    for where, content in places.items():
        for name, secret in secrets.items():
            for form, needle in forms(secret).items():
                if len(needle) >= 8 and needle in content:
                    found.append(f"{name} ({form}) in {where}")
    return found


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[Simulators]:
    world = Simulators(
        tmp_path / "world", time_scale=0.02, http_port=free_port(),
        webhook_secret=WEBHOOK_SECRET, admin_api_key=ADMIN_API_KEY, address_pool=address_pool(),
    )  # fmt: skip
    await world.start()
    yield world
    await world.stop()


@needs_root
async def test_no_secret_anywhere_after_the_whole_journey(sims: Simulators, tmp_path: Path) -> None:
    report = Report("secrets")
    service = await start_service(sims, tmp_path)
    lines: list[str] = []
    view = DemoView(sims.telegram, say=lines.append)
    view.watch("ops", sims.ops_chat_id)

    async def wait(_: timedelta) -> None:
        pass

    journey = Journey(
        sims, f"http://127.0.0.1:{sims.http_port}", view, wait,
        grace=timedelta(days=SHORT_DAYS), retention=timedelta(days=SHORT_DAYS),
    )  # fmt: skip
    view.start(journey.status)
    try:
        result = await journey.run()
    finally:
        await view.stop()
        service.send_signal(signal.SIGTERM)
        await service.wait()
    report.tried.append("the whole journey: payment, provisioning, /start, /link, login page,")
    report.tried.append("  /list, /status, a crash and its repair, cancellation, destruction")

    # The secrets, each recognisable.
    key_file = Path(sims.env()["SSH_PRIVATE_KEY_PATH"])
    key_body = max(read(key_file).decode().splitlines(), key=len)
    password = re.search(r"Gateway password</h2>\s*<code>([^<]+)</code>", result.login_page)
    assert password is not None, "the login page shows the gateway password"
    customer_texts = "\n".join(view.texts("customer"))
    login_tokens = re.findall(r"/login/([A-Za-z0-9_-]{16,})", customer_texts)
    assert login_tokens
    secrets = {
        "admin API key": ADMIN_API_KEY,
        "Paddle webhook secret": WEBHOOK_SECRET,
        "Paddle API key": sims.paddle.api_key,
        "Telegram bot token": sims.telegram.bot_token,
        "Hetzner token": sims.hetzner.token,
        "SSH private key": key_body,
        "gateway password": password.group(1),
    } | {f"login token {i}": token for i, token in enumerate(login_tokens)}

    # Where they must not be.
    database = Path(sims.env()["DATABASE_PATH"])
    backup = await backup_database(database, tmp_path / "backups", datetime.now(UTC))
    places: dict[str, bytes] = {"service log": read(tmp_path / "service.log")}
    for path in sorted(database.parent.glob(database.name + "*")):
        places[f"database file {path.name}"] = read(path)
    places["database backup"] = read(backup.path)
    with sqlite3.connect(database) as conn:  # every column as text (compressed pages aside)
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
            places[f"table {table}"] = repr(rows).encode()
        logs = conn.execute("SELECT id, provision_log FROM instances").fetchall()
        places["provision logs"] = "\n".join(log for _, log in logs).encode()
    ops = [m.text or "" for m in sims.telegram.bot_messages(sims.ops_chat_id)]
    places["ops group messages"] = "\n".join(ops).encode()
    report.tried.append(
        f"{len(secrets)} secrets x {len(forms('x'))} forms in {len(places)} places "
        f"({sum(len(c) for c in places.values()) // 1024} KiB)"
    )
    assert ops and logs and places["service log"]
    # The scan finds what is there: the customer's own login page shows the password.
    assert scan({"login page": result.login_page.encode()}, secrets)
    report.lost += scan(places, secrets)

    # Files holding secrets are private.
    for path in [database, key_file, backup.path]:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            report.lost.append(f"{path.name} has mode {mode:o}")
    report.print()
    assert not report.lost, report.line()


def test_the_admin_key_is_compared_in_constant_time(make_settings: Callable[..., Settings]) -> None:
    """`admin_key_ok` compares with hmac.compare_digest and never with ==/!=/in, and
    it gives the right answers."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(admin.admin_key_ok)))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            ops = {type(op) for op in node.ops}
            assert ops <= {ast.Is, ast.IsNot}, ast.unparse(node)  # only `is None`
    sources = inspect.getsource(admin)
    assert "admin_api_key" not in sources.replace(
        "ctx.settings.admin_api_key.get_secret_value()", ""
    ), "the key is read in one place only"

    ctx = SimpleNamespace(settings=make_settings(admin_api_key=ADMIN_API_KEY))
    assert admin.admin_key_ok(ctx, ADMIN_API_KEY)  # type: ignore[arg-type]
    for wrong in [None, "", ADMIN_API_KEY[:-1], ADMIN_API_KEY + "x", "\udcff" + ADMIN_API_KEY]:
        assert not admin.admin_key_ok(ctx, wrong)  # type: ignore[arg-type]
