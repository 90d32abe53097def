"""The outside checks of a gateway: yes/no answers, never an exception. Against a small
stand-in on loopback here; tests/provisioner/test_install.py checks them against the
VPS simulator's gateway after a real install."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from provisioner import gateway

PASSWORD = "a-password-of-thirty-two-chars-x"


class StandIn:
    def __init__(self) -> None:
        self.ready = True
        self.open_ui = False
        self.hang = False

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(30)
        if request.path == "/healthz":
            return web.json_response({"ok": True, "status": "live"})
        if request.path == "/readyz":
            return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)
        if request.path == "/control-ui-config.json":
            if self.open_ui or request.headers.get("Authorization") == f"Bearer {PASSWORD}":
                return web.json_response({"basePath": "/"})
            return web.json_response({"ok": False}, status=401)
        return web.json_response({"error": "Not Found"}, status=404)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, int]]:
    fake = StandIn()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_checks_answer_yes_or_no(
    stand_in: tuple[StandIn, int], session: aiohttp.ClientSession
) -> None:
    fake, port = stand_in
    ip = "127.0.0.1"
    assert await gateway.ready(session, ip, port)
    assert await gateway.healthy(session, ip, port)
    assert await gateway.password_required(session, ip, port)
    assert await gateway.password_accepted(session, ip, port, PASSWORD)
    assert not await gateway.password_accepted(session, ip, port, "wrong")
    fake.ready = False
    assert not await gateway.ready(session, ip, port)
    assert await gateway.healthy(session, ip, port)
    fake.open_ui = True  # an open Control UI is not "password required"
    assert not await gateway.password_required(session, ip, port)


async def test_unreachable_or_hanging_gateways_are_a_no(
    stand_in: tuple[StandIn, int], session: aiohttp.ClientSession
) -> None:
    port = closed_port()
    for check in (gateway.ready, gateway.healthy, gateway.password_required):
        assert not await check(session, "127.0.0.1", port)
    assert not await gateway.password_accepted(session, "127.0.0.1", port, PASSWORD)
    fake, live = stand_in
    fake.hang = True
    started = time.monotonic()
    assert not await gateway.ready(session, "127.0.0.1", live, timeout_s=0.2)
    assert not await gateway.password_accepted(session, "127.0.0.1", live, PASSWORD, timeout_s=0.2)
    assert time.monotonic() - started < 2
