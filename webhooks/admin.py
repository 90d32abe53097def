"""The admin REST API: read instances, record admin facts, queue operations.

Every route here needs `X-API-Key`. Action routes only record facts or queue
operations through `core.lifecycle`; the reconciler does the work.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

import aiosqlite
from aiohttp import web

from core.lifecycle import LifecycleError
from core.models import ACTOR_API, OperationKind, Status
from db.instances import get_instance, list_instances
from webhooks.context import CONTEXT, WebContext
from webhooks.errors import Handler, error_response

routes = web.RouteTableDef()

ESTIMATED_READY_SECONDS = 300
MAX_PER_PAGE = 100
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SUBSCRIPTION = re.compile(r"^sub_[a-z0-9]{10,40}$")
_SMALL_INT = re.compile(r"[0-9]{1,7}")
_INSTANCE_ID = re.compile(r"inst_[a-z0-9]{12}")


def admin_key_ok(ctx: WebContext, presented: str | None) -> bool:
    if presented is None:
        return False
    expected = ctx.settings.admin_api_key.get_secret_value().encode()
    # Headers may carry any bytes (aiohttp keeps undecodable ones as surrogates).
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected)


@web.middleware
async def require_admin_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin routes are every /api/ route but the webhook (signed) and the OpenAPI document."""
    path = request.path
    if not path.startswith("/api/") or path in ("/api/webhook/paddle", "/api/openapi.json"):
        return await handler(request)
    ctx = request.app[CONTEXT]
    if not admin_key_ok(ctx, request.headers.get("X-API-Key")):
        ctx.metrics.admin_requests.labels("unauthorized").inc()
        return error_response(401, "unauthorized", "missing or wrong X-API-Key")
    ctx.metrics.admin_requests.labels("ok").inc()
    return await handler(request)


def instance_json(ctx: WebContext, row: aiosqlite.Row) -> dict[str, Any]:
    ip = row["server_ip"]
    return {
        "instance_id": row["id"],
        "customer_id": row["customer_id"],
        "customer_email": row["customer_email"],
        "customer_name": row["customer_name"],
        "status": row["status"],
        "desired_state": row["desired_state"],
        "desired_reason": row["desired_reason"],
        "step": row["step"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "server_ip": ip,
        "hetzner_server_id": row["hetzner_server_id"],
        "server_name": row["server_name"],
        "location": row["location"],
        "setup_url": f"http://{ip}:{ctx.settings.gateway_port}" if ip else None,
        "plan": row["plan"],
        "subscription_id": row["subscription_id"],
        "admin_hold": row["admin_hold"],
        "hold_reason": row["hold_reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "last_health_check": row["last_health_check"],
        "health_status": row["health_status"],
    }


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, absurd numbers or nesting
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body is not a JSON object")
    return body


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not _SMALL_INT.fullmatch(text) or not low <= int(text) <= high:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer from {low} to {high}")
    return int(text)


def _lifecycle_error(exc: LifecycleError) -> web.Response:
    status = {"not_found": 404, "conflict": 409, "invalid_input": 400}.get(exc.code, 400)
    return error_response(status, exc.code, str(exc))


@routes.post("/api/provision")
async def provision(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await _json_body(request)
    email = body.get("customer_email")
    name = body.get("customer_name")
    subscription_id = body.get("paddle_subscription_id")
    if not isinstance(email, str) or not _EMAIL.match(email):
        return error_response(400, "invalid_input", "customer_email must be an email address")
    if name is not None and not isinstance(name, str):
        return error_response(400, "invalid_input", "customer_name must be a string")
    if subscription_id is not None and (
        not isinstance(subscription_id, str) or not _SUBSCRIPTION.match(subscription_id)
    ):
        return error_response(400, "invalid_input", "paddle_subscription_id must be sub_…")
    result = await ctx.core.admin.provision(email, name, subscription_id, ACTOR_API)
    return web.json_response(
        {
            "instance_id": result.instance_id,
            "status": result.status,
            "estimated_ready_seconds": ESTIMATED_READY_SECONDS,
        },
        status=202,
    )


@routes.get("/api/instances")
async def instances(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in Status}:
        return error_response(
            400, "invalid_input", f"status must be one of {', '.join(s.value for s in Status)}"
        )
    page = _int_param(request, "page", 1, 1, 1_000_000)
    per_page = _int_param(request, "per_page", 50, 1, MAX_PER_PAGE)
    rows, total = await list_instances(ctx.db, status=status, page=page, per_page=per_page)
    return web.json_response(
        {
            "instances": [instance_json(ctx, row) for row in rows],
            "meta": {
                "page": page,
                "per_page": per_page,
                "total": total,
                "last_page": max(1, -(-total // per_page)),
            },
        }
    )


async def _instance_or_404(request: web.Request) -> aiosqlite.Row:
    instance_id = request.match_info["instance_id"]
    row = None
    if _INSTANCE_ID.fullmatch(instance_id):
        row = await get_instance(request.app[CONTEXT].db, instance_id)
    if row is None:
        # Echo the id only when it is one: anything else may not even be printable.
        shown = instance_id if _INSTANCE_ID.fullmatch(instance_id) else "instance"
        raise web.HTTPNotFound(reason=f"{shown} not found")
    return row


@routes.get("/api/instances/{instance_id}")
async def instance(request: web.Request) -> web.Response:
    return web.json_response(instance_json(request.app[CONTEXT], await _instance_or_404(request)))


@routes.get("/api/health/{instance_id}")
async def health(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    row = await _instance_or_404(request)
    healthy_since = row["healthy_since"]
    uptime = None
    if healthy_since and row["health_status"] == "healthy":
        from core.clock import from_iso

        uptime = int((ctx.clock.now() - from_iso(healthy_since)).total_seconds())
    return web.json_response(
        {
            "instance_id": row["id"],
            "status": row["health_status"],
            "gateway_reachable": row["health_status"] == "healthy",
            "uptime_seconds": uptime,
            "last_checked": row["last_health_check"],
        }
    )


async def _action_response(request: web.Request, **extra: Any) -> web.Response:
    row = await _instance_or_404(request)
    return web.json_response(
        {
            "instance_id": row["id"],
            "status": row["status"],
            "desired_state": row["desired_state"],
            **extra,
        },
        status=202,
    )


@routes.post("/api/instances/{instance_id}/suspend")
async def suspend(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    await _instance_or_404(request)
    reason = (await _json_body(request)).get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return error_response(400, "invalid_input", "reason is required")
    try:
        await ctx.core.admin.suspend(request.match_info["instance_id"], reason, ACTOR_API)
    except LifecycleError as exc:
        return _lifecycle_error(exc)
    return await _action_response(request)


@routes.post("/api/instances/{instance_id}/resume")
async def resume(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        await ctx.core.admin.resume(request.match_info["instance_id"], ACTOR_API)
    except LifecycleError as exc:
        return _lifecycle_error(exc)
    return await _action_response(request)


@routes.post("/api/instances/{instance_id}/destroy")
async def destroy(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        warning = await ctx.core.admin.destroy(request.match_info["instance_id"], ACTOR_API)
    except LifecycleError as exc:
        return _lifecycle_error(exc)
    return await _action_response(request, warning=warning)


async def _queue(request: web.Request, kind: OperationKind) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        operation_id = await ctx.core.admin.queue_operation(
            request.match_info["instance_id"], kind, ACTOR_API
        )
    except LifecycleError as exc:
        return _lifecycle_error(exc)
    return await _action_response(request, operation_id=operation_id, operation=kind.value)


@routes.post("/api/instances/{instance_id}/reprovision")
async def reprovision(request: web.Request) -> web.Response:
    return await _queue(request, OperationKind.REPROVISION)


@routes.post("/api/instances/{instance_id}/retry")
async def retry(request: web.Request) -> web.Response:
    return await _queue(request, OperationKind.RETRY)
