"""POST /api/webhook/paddle: verify, store durably, answer, apply exactly once."""

from __future__ import annotations

import logging

from aiohttp import web

from core.paddle_events import MalformedEvent
from webhooks.context import CONTEXT
from webhooks.errors import error_response
from webhooks.paddle_signature import SignatureError, verify

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.post("/api/webhook/paddle")
async def paddle_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    raw = await request.read()  # the raw bytes: the signature covers exactly these
    try:
        verify(
            request.headers.get("Paddle-Signature"),
            raw,
            [secret.get_secret_value() for secret in ctx.settings.paddle_webhook_secrets],
            now=ctx.clock.now().timestamp(),
            tolerance_s=ctx.settings.paddle_signature_tolerance_s,
        )
    except SignatureError as exc:
        ctx.metrics.paddle_events.labels("bad_signature").inc()
        log.warning("paddle webhook refused: %s (from %s)", exc, request.remote)
        return error_response(401, "invalid_signature", str(exc))
    try:
        # Stored and applied in one commit (grouped with concurrent deliveries): from
        # its return on Paddle may be told yes. An event that failed to apply is stored
        # with its error, and a replay or the next start-up tries again.
        envelope, is_new, outcome = await ctx.core.inbox.receive(raw)
    except MalformedEvent as exc:
        ctx.metrics.paddle_events.labels("malformed").inc()
        log.warning("paddle webhook malformed: %s", exc)
        return error_response(400, "invalid_input", str(exc))
    if not is_new and outcome is None:
        ctx.metrics.paddle_events.labels("duplicate").inc()
        log.info("paddle event %s %s is a duplicate", envelope.event_type, envelope.event_id)
        return web.json_response({"ok": True, "duplicate": True})
    ctx.metrics.paddle_events.labels(outcome or "duplicate").inc()
    ctx.on_paddle_event()
    return web.json_response({"ok": True, "outcome": outcome})
