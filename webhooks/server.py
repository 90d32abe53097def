"""The aiohttp application: composes the route tables and the middlewares."""

from __future__ import annotations

from aiohttp import web

from webhooks import admin, fleet, health, login, openapi, paddle, storefront
from webhooks.context import CONTEXT, WebContext
from webhooks.errors import Handler, error_response, json_errors
from webhooks.ratelimit import RateLimiter, client_ip

MAX_BODY_BYTES = 1024 * 1024
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)

# The webhook is guarded by its signature; health and metrics are for monitors.
_UNLIMITED = frozenset({"/api/webhook/paddle", "/healthz", "/metrics"})


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _UNLIMITED:
        return await handler(request)
    ctx = request.app[CONTEXT]
    client = client_ip(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        ctx.settings.trusted_proxy_networks,
    )
    allowed, wait = request.app[RATE_LIMITER].allow(client)
    if not allowed:
        return error_response(
            429, "rate_limited", "too many requests", **{"Retry-After": str(max(1, round(wait)))}
        )
    return await handler(request)


def create_app(ctx: WebContext) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[json_errors, rate_limit, admin.require_admin_key],
    )
    app[CONTEXT] = ctx
    app[RATE_LIMITER] = RateLimiter(ctx.settings.admin_rate_limit_per_s, ctx.clock)
    tables = (paddle.routes, admin.routes, health.routes, openapi.routes, login.routes)
    for table in (*tables, storefront.routes):
        app.add_routes(table)
    app.add_routes(fleet.routes)  # fleet upgrades: admin routes (X-API-Key) like the others
    return app
