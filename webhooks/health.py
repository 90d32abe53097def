"""The backend's own health and metrics: GET /healthz and GET /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.models import Status
from db.instances import count_by_status
from webhooks.context import CONTEXT

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive, able to read the database, and every part moving: 200 when all is well,
    503 with the part that is not, so an uptime monitor sees a stuck scheduler too."""
    ctx = request.app[CONTEXT]
    version = await ctx.db.user_version()
    ok, parts = await ctx.liveness.report()
    body = {"ok": ok, "schema_version": version, "parts": parts}
    return web.json_response(body, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    counts = await count_by_status(ctx.db)
    for status in Status:
        ctx.metrics.instances.labels(status.value).set(counts.get(status.value, 0))
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
