"""The admin REST API over real HTTP: keys, shapes, facts, operations, rate limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.clock import FakeClock
from core.models import Status
from tests.conftest import ADMIN_KEY, Backend

ROUTES: list[tuple[str, str]] = [
    ("GET", "/api/instances"),
    ("GET", "/api/instances/{id}"),
    ("GET", "/api/health/{id}"),
    ("POST", "/api/provision"),
    ("POST", "/api/instances/{id}/suspend"),
    ("POST", "/api/instances/{id}/resume"),
    ("POST", "/api/instances/{id}/reprovision"),
    ("POST", "/api/instances/{id}/destroy"),
    ("POST", "/api/instances/{id}/retry"),
]


async def provision(backend: Backend, **body: Any) -> dict[str, Any]:
    status, answer = await backend.admin(
        "POST", "/api/provision", json={"customer_email": "ada@example.com", **body}
    )
    assert status == 202, answer
    return dict(answer)


async def instance(backend: Backend, instance_id: str) -> dict[str, Any]:
    status, body = await backend.admin("GET", f"/api/instances/{instance_id}")
    assert status == 200
    return dict(body)


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("key", [None, "wrong-key", ADMIN_KEY[:-1], ADMIN_KEY + "x", ""])
async def test_every_admin_route_refuses_missing_or_wrong_keys(
    backend: Backend, method: str, path: str, key: str | None
) -> None:
    created = await provision(backend)
    headers = {"X-API-Key": key} if key is not None else {}
    url = path.format(id=created["instance_id"])
    async with backend.client.request(method, url, headers=headers, json={}) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
    assert (await instance(backend, created["instance_id"]))["desired_state"] == "active"


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if "{id}" in r[1]])
async def test_unknown_instance_is_404(backend: Backend, method: str, path: str) -> None:
    status, body = await backend.admin(
        method, path.format(id="inst_000000000000"), json={"reason": "x"}
    )
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_provision_returns_202_and_lists_the_instance(backend: Backend) -> None:
    created = await provision(backend, customer_name="Ada")
    assert created["status"] == "provisioning" and created["estimated_ready_seconds"] == 300
    [listed] = await backend.instances()
    assert listed["instance_id"] == created["instance_id"]
    assert listed["customer_email"] == "ada@example.com" and listed["plan"] == "manual"
    assert listed["status"] == "provisioning" and listed["health_status"] == "unknown"
    for field in ("server_ip", "hetzner_server_id", "setup_url", "created_at", "last_health_check"):
        assert field in listed


async def test_provision_is_idempotent_on_the_subscription(backend: Backend) -> None:
    first = await provision(backend, paddle_subscription_id="sub_01abcdefghijklmnop")
    second = await provision(backend, paddle_subscription_id="sub_01abcdefghijklmnop")
    assert first["instance_id"] == second["instance_id"]
    [listed] = await backend.instances()
    assert listed["plan"] == "monthly" and listed["subscription_id"] == "sub_01abcdefghijklmnop"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"customer_email": "not-an-email"},
        {"customer_email": 5},
        {"customer_email": "a@b.co", "paddle_subscription_id": "DROP TABLE"},
        {"customer_email": "a@b.co", "customer_name": ["x"]},
    ],
)
async def test_provision_rejects_bad_input(backend: Backend, body: dict[str, Any]) -> None:
    status, answer = await backend.admin("POST", "/api/provision", json=body)
    assert status == 400 and answer["error"]["code"] == "invalid_input"
    assert await backend.instances() == []


async def test_provision_rejects_malformed_json(backend: Backend) -> None:
    status, answer = await backend.admin(
        "POST", "/api/provision", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and answer["error"]["code"] == "invalid_input"
    assert await backend.instances() == []


async def test_suspend_needs_a_reason_and_holds_until_resume(backend: Backend) -> None:
    created = await provision(backend)
    path = f"/api/instances/{created['instance_id']}"
    status, body = await backend.admin("POST", f"{path}/suspend", json={})
    assert status == 400
    status, body = await backend.admin("POST", f"{path}/suspend", json={"reason": "abuse report"})
    assert status == 202 and body["desired_state"] == "suspended"
    shown = await instance(backend, created["instance_id"])
    assert shown["admin_hold"] == "suspended" and shown["hold_reason"] == "abuse report"
    status, body = await backend.admin("POST", f"{path}/resume")
    assert status == 202 and body["desired_state"] == "active"
    assert (await instance(backend, created["instance_id"]))["admin_hold"] is None
    actors = await backend.context.db.fetch_all(
        "SELECT actor, event_type FROM events WHERE instance_id = ? ORDER BY id",
        (created["instance_id"],),
    )
    assert ("api", "admin_suspended") in [tuple(a) for a in actors]
    assert ("api", "admin_resumed") in [tuple(a) for a in actors]


async def test_destroy_is_final_and_warns_when_still_paid(backend: Backend) -> None:
    created = await provision(backend, paddle_subscription_id="sub_01abcdefghijklmnop")
    path = f"/api/instances/{created['instance_id']}"
    status, body = await backend.admin("POST", f"{path}/destroy")
    assert status == 202 and body["desired_state"] == "destroyed"
    assert "still paid" in body["warning"]
    for action in ("resume", "destroy", "reprovision"):
        status, body = await backend.admin("POST", f"{path}/{action}")
        assert status == 409 and body["error"]["code"] == "conflict"


async def test_reprovision_queues_one_operation(backend: Backend) -> None:
    created = await provision(backend)
    path = f"/api/instances/{created['instance_id']}/reprovision"
    _, first = await backend.admin("POST", path)
    _, second = await backend.admin("POST", path)
    assert first["operation"] == "reprovision" and first["operation_id"] == second["operation_id"]
    ops = await backend.context.db.fetch_all("SELECT kind, state, requested_by FROM operations")
    assert [tuple(o) for o in ops] == [("reprovision", "pending", "api")]


async def test_retry_only_for_failed_instances(backend: Backend) -> None:
    created = await provision(backend)
    path = f"/api/instances/{created['instance_id']}/retry"
    status, body = await backend.admin("POST", path)
    assert status == 409
    async with backend.context.db.transaction() as conn:
        await conn.execute(
            "UPDATE instances SET status = ? WHERE id = ?",
            (Status.FAILED.value, created["instance_id"]),
        )
    status, body = await backend.admin("POST", path)
    assert status == 202 and body["operation"] == "retry"


async def test_health_shape(backend: Backend) -> None:
    created = await provision(backend)
    status, body = await backend.admin("GET", f"/api/health/{created['instance_id']}")
    assert status == 200
    assert body == {
        "instance_id": created["instance_id"],
        "status": "unknown",
        "gateway_reachable": False,
        "uptime_seconds": None,
        "last_checked": None,
    }


async def test_list_filters_and_pages(backend: Backend, clock: FakeClock) -> None:
    ids = [(await provision(backend))["instance_id"] for _ in range(5)]
    status, body = await backend.admin("GET", "/api/instances?per_page=2&page=3")
    assert status == 200 and len(body["instances"]) == 1
    assert body["meta"] == {"page": 3, "per_page": 2, "total": 5, "last_page": 3}
    _, body = await backend.admin("GET", "/api/instances?status=active")
    assert body["instances"] == [] and body["meta"]["total"] == 0
    _, body = await backend.admin("GET", "/api/instances?status=provisioning&per_page=100")
    assert sorted(i["instance_id"] for i in body["instances"]) == sorted(ids)
    for query in ("status=bogus", "page=0", "per_page=101", "page=x"):
        clock.advance(timedelta(seconds=1))  # stay under the rate limit
        status, body = await backend.admin("GET", f"/api/instances?{query}")
        assert status == 400, query


async def test_openapi_describes_every_route(backend: Backend) -> None:
    async with backend.client.get("/api/openapi.json") as response:
        spec = await response.json()
    paths = set(spec["paths"])
    for _, path in ROUTES:
        assert path.replace("{id}", "{instance_id}") in paths
    assert {"/api/webhook/paddle", "/healthz", "/metrics"} <= paths


async def test_healthz_and_metrics(backend: Backend) -> None:
    await provision(backend)
    async with backend.client.get("/healthz") as response:
        assert response.status == 200 and (await response.json())["ok"] is True
    async with backend.client.get("/metrics") as response:
        text = await response.text()
    assert 'openclaw_instances{status="provisioning"} 1.0' in text


async def test_rate_limit_per_client_ip(backend: Backend) -> None:
    # The fake clock does not move, so the bucket (10/s, burst 10) never refills.
    statuses = []
    for _ in range(12):
        status, _ = await backend.admin("GET", "/api/instances")
        statuses.append(status)
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]
    async with backend.client.get("/api/instances", headers={"X-API-Key": ADMIN_KEY}) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    # The signed webhook and the health endpoint are not rate limited.
    async with backend.client.get("/healthz") as response:
        assert response.status == 200


async def test_forwarded_for_is_ignored_from_untrusted_peers(backend: Backend) -> None:
    for n in range(10):
        await backend.admin("GET", "/api/instances", headers={"X-Forwarded-For": f"10.0.0.{n}"})
    status, _ = await backend.admin(
        "GET", "/api/instances", headers={"X-Forwarded-For": "10.0.0.99"}
    )
    assert status == 429  # every request counted against the real peer, 127.0.0.1


async def test_forwarded_for_is_believed_from_trusted_proxies(
    backend: Backend, make_settings: Any
) -> None:
    backend.context.settings = make_settings(trusted_proxies="127.0.0.0/8")
    for _ in range(10):
        await backend.admin("GET", "/api/instances", headers={"X-Forwarded-For": "203.0.113.7"})
    blocked, _ = await backend.admin(
        "GET", "/api/instances", headers={"X-Forwarded-For": "203.0.113.7"}
    )
    other, _ = await backend.admin(
        "GET", "/api/instances", headers={"X-Forwarded-For": "198.51.100.1, 127.0.0.2"}
    )
    assert (blocked, other) == (429, 200)
