"""Bad input: property-based fuzzing of the Paddle webhook (bodies, headers, signatures,
and validly signed events with hostile content), schemathesis against the admin API's
own OpenAPI document (itself checked against the seed's shapes), and bot commands with
random arguments.

Invalid requests get 4xx and store nothing; validly signed well-formed events, however
odd, get 200, are stored and change nothing beyond what they mean; never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from core.billing import Prices
from core.clock import FakeClock
from core.policy import PolicyTimings
from core.services import build_core
from core.settings import Settings
from db.connection import Database
from sim.paddle import paddle_id, paddle_time, signature_header
from tests.app.test_demo import free_port
from tests.conftest import (
    ADMIN_KEY,
    LIFETIME_PRICE,
    MONTHLY_PRICE,
    WEBHOOK_SECRET,
    Backend,
    base_settings,
)
from tests.torture.harness import Report, scale
from webhooks.context import WebContext
from webhooks.openapi import SPEC
from webhooks.server import create_app

EXAMPLES = scale(300, 10_000)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
HOSTILE = [
    "<b>bold</b>", "<script>alert(1)</script>", "&amp;", "'; DROP TABLE instances; --",
    '" OR 1=1 --', "\x00", "\u202e", "😀", "%s%n", "../../etc/passwd", "A" * 100_000,
]  # fmt: skip
KNOWN_TYPES = [
    "subscription.created", "subscription.updated", "subscription.activated",
    "subscription.canceled", "subscription.past_due", "subscription.paused",
    "subscription.resumed", "transaction.completed", "adjustment.created",
    "adjustment.updated", "customer.created", "customer.updated",
]  # fmt: skip
TABLES = ["customers", "subscriptions", "purchases", "instances", "operations", "notifications"]

hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=200))
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES} | {  # noqa: S608
            "paddle_events": conn.execute("SELECT count(*) FROM paddle_events").fetchone()[0]
        }


def stored(database: Path, event_id: str) -> bool:
    with sqlite3.connect(database) as conn:
        sql = "SELECT 1 FROM paddle_events WHERE event_id = ?"
        return conn.execute(sql, (event_id,)).fetchone() is not None


async def post(backend: Backend, body: bytes, header: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Paddle-Signature"] = header
    async with backend.client.post("/api/webhook/paddle", data=body, headers=headers) as answer:
        assert answer.status < 500, (answer.status, await answer.text())
        if answer.status >= 400:  # JSON error bodies
            assert "error" in json.loads(await answer.text())
        return answer.status


def signed(backend: Backend, body: bytes) -> str:
    return signature_header(WEBHOOK_SECRET, body, int(backend.context.clock.now().timestamp()))


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=2048), json_value.map(lambda v: json.dumps(v).encode())),
    header=st.one_of(
        st.none(),
        st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=200),
        st.builds(
            lambda ts, h: f"ts={ts};h1={h}",
            st.integers(-(2**40), 2**40),
            st.text("0123456789abcdef", min_size=0, max_size=64),
        ),
    ),
)
async def test_unsigned_or_badly_signed_webhooks_are_refused_and_store_nothing(
    backend: Backend, body: bytes, header: str | None
) -> None:
    database = backend.context.settings.database_path
    before = counts(database)
    assert await post(backend, body, header) in (400, 401, 413)
    assert counts(database) == before


@FUZZ
@given(body=st.one_of(st.binary(max_size=2048), json_value.map(lambda v: json.dumps(v).encode())))
async def test_signed_garbage_is_refused_and_stores_nothing(backend: Backend, body: bytes) -> None:
    database = backend.context.settings.database_path
    before = counts(database)
    status = await post(backend, body, signed(backend, body))
    if status != 200:  # random JSON is almost never a Paddle envelope
        assert status in (400, 413)
        assert counts(database) == before


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(
        st.one_of(
            st.sampled_from(KNOWN_TYPES),
            st.builds(lambda a, b: f"{a}.{b}", hostile_text, hostile_text),
        )
    )
    data = draw(st.dictionaries(hostile_text, json_value, max_size=6))
    if draw(st.booleans()):  # a plausible subscription with hostile fields
        data |= {
            "id": draw(st.one_of(st.just(paddle_id("sub")), hostile_text)),
            "customer_id": draw(st.one_of(st.just(paddle_id("ctm")), hostile_text)),
            "status": draw(st.sampled_from(["active", "canceled", "paused", "<b>x</b>"])),
            "items": [{"price": {"id": draw(st.sampled_from([MONTHLY_PRICE, *HOSTILE]))}}],
            "custom_data": draw(st.one_of(st.none(), json_value)),
        }
    return {
        "event_id": "evt_" + draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1)),
        "event_type": event_type,
        "occurred_at": paddle_time(),
        "notification_id": draw(st.one_of(st.none(), hostile_text)),
        "data": data,
    }


@FUZZ
@given(event=hostile_events())
async def test_signed_events_with_hostile_content_never_break_anything(
    backend: Backend, event: dict[str, Any]
) -> None:
    database = backend.context.settings.database_path
    before = counts(database)
    body = json.dumps(event).encode()
    status = await post(backend, body, signed(backend, body))
    after = counts(database)
    if status == 200:
        assert stored(database, event["event_id"])
        if event["event_type"] not in KNOWN_TYPES:  # stored, and nothing else happens
            assert after == before | {"paddle_events": after["paddle_events"]}
    else:  # a known type missing what we read: refused before anything is stored
        assert status in (400, 413)
        assert after == before


# -- the admin API, fuzzed from its own OpenAPI document ------------------------------


def test_the_openapi_document_keeps_the_seeds_shapes() -> None:
    paths = SPEC["paths"]
    for path, method in [
        ("/api/webhook/paddle", "post"), ("/api/provision", "post"),
        ("/api/instances", "get"), ("/api/health/{instance_id}", "get"),
        ("/api/instances/{instance_id}/suspend", "post"),
        ("/api/instances/{instance_id}/destroy", "post"),
    ]:  # fmt: skip
        assert method in paths[path], (path, method)
    text = json.dumps(SPEC)
    for name in [
        "customer_email", "customer_name", "paddle_subscription_id", "plan", "instance_id",
        "estimated_ready_seconds", "server_ip", "hetzner_server_id", "setup_url",
        "created_at", "last_health_check", "health_status", "gateway_reachable",
        "uptime_seconds", "last_checked",
    ]:  # fmt: skip
        assert f'"{name}"' in text, name


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real web app on a real port, served from its own thread (schemathesis calls
    it synchronously)."""
    tmp_path = tmp_path_factory.mktemp("api")
    values = base_settings(tmp_path) | {"admin_rate_limit_per_s": "100000"}
    app_settings = Settings(_env_file=None, **values)
    loop = asyncio.new_event_loop()
    port = free_port()
    started = threading.Event()

    async def boot() -> tuple[web.AppRunner, Database]:
        db = await Database.open(app_settings.database_path)
        clock = FakeClock()
        core = build_core(
            db, clock, timings=PolicyTimings(), prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
            lifetime_cap=app_settings.lifetime_cap,
        )  # fmt: skip
        runner = web.AppRunner(create_app(WebContext(app_settings, core)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, db

    def serve() -> None:
        asyncio.set_event_loop(loop)
        parts.append(loop.run_until_complete(boot()))
        started.set()
        loop.run_forever()

    parts: list[tuple[web.AppRunner, Database]] = []
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    yield f"http://127.0.0.1:{port}"
    runner, db = parts[0]
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    asyncio.run_coroutine_threadsafe(db.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


api_schema = schemathesis.openapi.from_dict(SPEC)


@api_schema.parametrize()
@settings(
    max_examples=scale(8, 200),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_admin_api_against_its_openapi_document(case: Any, live_api: str) -> None:
    headers = {"X-API-Key": ADMIN_KEY}
    if case.path == "/api/webhook/paddle":
        headers = {}  # its own guard: the signature
    response = case.call(base_url=live_api, headers=headers)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    # Everything but the two checks that grade how precise the document's request
    # schemas are (it states types, the handlers check more: enums, ranges, `plan`).
    loose = [checks.positive_data_acceptance, checks.negative_data_rejection]
    case.validate_response(response, headers=headers, excluded_checks=loose)


def test_report_line() -> None:
    """The fuzzers above assert per example; this prints what they tried."""
    report = Report("bad-input")
    report.tried.append(f"webhook: {EXAMPLES} random bodies and signature headers")
    report.tried.append(f"webhook: {EXAMPLES} signed random bodies")
    report.tried.append(f"webhook: {EXAMPLES} signed envelopes with hostile content")
    report.tried.append("admin API: schemathesis over every operation of /api/openapi.json")
    report.tried.append("bot: admin commands with random and hostile arguments")
    report.print()


# -- bot commands with random arguments -------------------------------------------------

ADMIN_COMMANDS = [
    "list", "status", "suspend", "resume", "reprovision", "retry", "destroy", "logs",
    "mute", "stats", "help", "fleet", "upgrade", "rollout",
]  # fmt: skip
bot_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)


def bot_state(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as conn:
        instances = conn.execute(
            "SELECT id, status, desired_state, admin_hold, admin_destroyed_at FROM instances"
        ).fetchall()
        operations = conn.execute("SELECT count(*) FROM operations").fetchall()
    return [*instances, *operations]


@settings(
    max_examples=scale(60, 1000),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    command=st.sampled_from(ADMIN_COMMANDS),
    args=st.one_of(
        st.sampled_from(HOSTILE[:-1]),
        bot_text,
        bot_text.map(lambda t: "{id} " + t),
    ),
)
async def test_bot_commands_with_random_arguments(world: Any, command: str, args: str) -> None:
    """An admin's command with any arguments gets an answer (Telegram accepted it, so
    whatever it echoes is escaped), and changes nothing without a confirmation."""
    if not await world.db.fetch_all("SELECT id FROM instances"):
        await world.provision("fuzz@example.com")
        # Thousands of commands a minute would meet the group's flood limit, and a
        # command's direct reply is not retried after a 429 (written up separately):
        # what is fuzzed here is the arguments.
        world.sim.set_flood_limit(world.ops.id, 1_000_000, 1.0)
    [row] = await world.db.fetch_all("SELECT id FROM instances")
    args = args.replace("{id}", row["id"])
    database = world.ctx.settings.database_path
    before = bot_state(database)
    reply = await world.ask(command, args)
    assert reply.text
    assert bot_state(database) == before
