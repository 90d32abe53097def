"""The fleet routes over real HTTP: keys, checks, a rollout started, changed and shown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.clock import FakeClock
from tests.conftest import ADMIN_KEY, Backend

ROUTES = [
    ("GET", "/api/fleet"),
    ("POST", "/api/fleet/upgrade"),
    ("GET", "/api/fleet/rollout"),
    ("POST", "/api/fleet/rollout/pause"),
    ("POST", "/api/fleet/rollout/resume"),
    ("POST", "/api/fleet/rollout/abort"),
]
NEW = "2026.10.1"


async def call(backend: Backend, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    clock = backend.context.clock
    assert isinstance(clock, FakeClock)
    clock.advance(timedelta(seconds=1))  # stay under the rate limit
    return await backend.admin(method, path, **kwargs)


async def active(backend: Backend, email: str, version: str = "2026.9.6") -> str:
    status, body = await call(backend, "POST", "/api/provision", json={"customer_email": email})
    assert status == 202
    async with backend.context.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET status = 'active', openclaw_version = ? WHERE id = ?",
            (version, body["instance_id"]),
        )
    return str(body["instance_id"])


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_fleet_routes_need_the_key_and_are_described(
    backend: Backend, method: str, path: str
) -> None:
    async with backend.client.request(method, path, json={"version": NEW}) as response:
        assert response.status == 401
    async with backend.client.get("/api/openapi.json") as response:
        spec = await response.json()
    assert method.lower() in spec["paths"][path]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": "latest"},
        {"version": NEW, "batch_size": 0},
        {"version": NEW, "batch_size": True},
        {"version": NEW, "soak_s": "soon"},
        {"version": NEW, "max_failures": 1.5},
        {"version": NEW, "respect_quiet_window": "no"},
        {"version": NEW, "batch_size": float("inf")},
        {"version": NEW, "max_failures": 10**30},
        {"version": NEW, "canary": float("nan")},
        {"version": "2026.1.1\u0000"},
    ],
)
async def test_upgrade_refuses_bad_input(backend: Backend, body: dict[str, Any]) -> None:
    status, answer = await call(backend, "POST", "/api/fleet/upgrade", json=body)
    assert status == 400 and answer["error"]["code"] == "invalid_input"


async def test_a_rollout_started_shown_paused_resumed_aborted(backend: Backend) -> None:
    first = await active(backend, "a@example.com")
    await active(backend, "b@example.com", version=NEW)
    status, _ = await call(backend, "GET", "/api/fleet/rollout")
    assert status == 404

    body = {"version": NEW, "batch_size": 3, "soak_s": 60, "respect_quiet_window": False}
    status, started = await call(backend, "POST", "/api/fleet/upgrade", json=body)
    assert status == 202, started
    assert started["state"] == "running" and started["phase"] == "canary"
    assert (started["canary"], started["batch_size"], started["max_failures"]) == (1, 3, 2)
    assert started["previous_version"] == "2026.9.6" and started["requested_by"] == "api"
    status, again = await call(backend, "POST", "/api/fleet/upgrade", json={"version": NEW})
    assert status == 409 and "rollout 1 is running" in again["error"]["message"]

    status, shown = await call(backend, "GET", "/api/fleet/rollout")
    assert status == 200 and shown["remaining"] == 1 and shown["instances"] == {}
    assert shown["versions"] == {"2026.9.6": [first], NEW: [shown["versions"][NEW][0]]}

    for verb, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        status, changed = await call(backend, "POST", f"/api/fleet/rollout/{verb}")
        assert status == 200 and changed["state"] == state, verb
    status, missing = await call(backend, "POST", "/api/fleet/rollout/abort")
    assert status == 404 and missing["error"]["code"] == "not_found"
    # Started and changed through the API: the ops group hears of each.
    rows = await backend.context.db.fetch_all(
        "SELECT kind FROM notifications WHERE kind LIKE 'rollout%' ORDER BY id"
    )
    assert [row["kind"] for row in rows] == ["rollout_started"] + ["rollout_changed"] * 3

    status, fleet = await call(backend, "GET", "/api/fleet")
    assert status == 200 and fleet["target_version"] == "2026.9.6"
    assert set(fleet["versions"]) == {"2026.9.6", NEW}
    assert fleet["os"]["not_checked"] and fleet["rollout"]["state"] == "aborted"


async def test_pause_without_a_rollout_is_404(backend: Backend) -> None:
    status, body = await call(backend, "POST", "/api/fleet/rollout/pause")
    assert status == 404 and body["error"]["code"] == "not_found"
    async with backend.client.post(
        "/api/fleet/rollout/pause", headers={"X-API-Key": ADMIN_KEY + "x"}
    ) as response:
        assert response.status == 401
