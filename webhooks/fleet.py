"""The fleet's admin routes: rollouts of an OpenClaw version, and the fleet at a glance.

`POST /api/fleet/upgrade` starts a rollout at once (the API key is the confirmation the
ops group asks for with a button); the driver in the reconciler does the rest. Like
every /api/ route these need `X-API-Key` (webhooks.admin.require_admin_key).
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from core.fleet import fleet_view
from core.lifecycle import LifecycleError
from core.models import ACTOR_API
from core.rollout_admin import RolloutAdmin
from core.rollout_store import Progress, RolloutStore
from core.rollouts import Rollout, RolloutPlan
from webhooks.admin import _json_body, _lifecycle_error
from webhooks.context import CONTEXT, WebContext
from webhooks.errors import error_response

routes = web.RouteTableDef()


def rollout_admin(ctx: WebContext) -> RolloutAdmin:
    core = ctx.core
    return RolloutAdmin(core.db, core.clock, ctx.settings.openclaw_version, core.lifecycle.wake)


def rollout_json(rollout: Rollout, progress: Progress | None = None) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value is not None else None

    body: dict[str, Any] = {
        "rollout_id": rollout.id,
        "version": rollout.version,
        "previous_version": rollout.previous_version,
        "state": rollout.state.value,
        "phase": rollout.phase.value,
        "canary": rollout.canary_size,
        "batch_size": rollout.batch_size,
        "max_failures": rollout.max_failures,
        "soak_s": rollout.soak_s,
        "respect_quiet_window": rollout.respect_quiet_window,
        "soak_until": iso(rollout.soak_until),
        "canary_passed_at": iso(rollout.canary_passed_at),
        "halt_reason": rollout.halt_reason,
        "waiting_for": rollout.waiting_for,
        "requested_by": rollout.requested_by,
        "created_at": iso(rollout.created_at),
        "started_at": iso(rollout.started_at),
        "finished_at": iso(rollout.finished_at),
    }
    if progress is not None:
        body["instances"] = {state.value: ids for state, ids in progress.members.items()}
        body["remaining"] = progress.remaining
        body["left_out"] = progress.left_out
        body["versions"] = progress.versions
    return body


def _number(body: dict[str, Any], name: str, default: float, *, integer: bool) -> float:
    value = body.get(name, default)
    # JSON booleans are ints in Python, and Python's JSON reads NaN and Infinity: refuse
    # them like any other non-number (the plan's own check bounds the rest).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise web.HTTPBadRequest(reason=f"{name} must be a number")
    if integer and value != int(value):
        raise web.HTTPBadRequest(reason=f"{name} must be an integer")
    return value


@routes.post("/api/fleet/upgrade")
async def upgrade(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await _json_body(request)
    version = body.get("version")
    if not isinstance(version, str):
        return error_response(400, "invalid_input", "version is required (e.g. 2026.9.6)")
    quiet = body.get("respect_quiet_window", True)
    if not isinstance(quiet, bool):
        return error_response(400, "invalid_input", "respect_quiet_window must be a boolean")
    settings = ctx.settings
    canary = body.get("canary")
    plan = RolloutPlan(
        version=version,
        batch_size=int(_number(body, "batch_size", settings.rollout_batch_size, integer=True)),
        max_failures=int(
            _number(body, "max_failures", settings.rollout_max_failures, integer=True)
        ),
        soak_s=float(_number(body, "soak_s", settings.rollout_soak_s, integer=False)),
        respect_quiet_window=quiet,
        canary_size=None if canary is None else int(_number(body, "canary", 1, integer=True)),
    )
    try:
        rollout = await rollout_admin(ctx).start(plan, ACTOR_API)
    except LifecycleError as exc:
        return _lifecycle_error(exc)
    return web.json_response(rollout_json(rollout), status=202)


@routes.get("/api/fleet/rollout")
async def rollout(request: web.Request) -> web.Response:
    """The open rollout with its progress, else the latest; 404 when there never was one."""
    ctx = request.app[CONTEXT]
    store = RolloutStore(ctx.db, ctx.clock)
    current = await store.open() or await store.latest()
    if current is None:
        return error_response(404, "not_found", "no rollout yet")
    return web.json_response(rollout_json(current, await store.progress(current)))


async def _change(request: web.Request, verb: str) -> web.Response:
    admin = rollout_admin(request.app[CONTEXT])
    try:
        changed = await getattr(admin, verb)(ACTOR_API)
    except LifecycleError as exc:
        return _lifecycle_error(exc)
    return web.json_response(rollout_json(changed))


@routes.post("/api/fleet/rollout/pause")
async def pause(request: web.Request) -> web.Response:
    return await _change(request, "pause")


@routes.post("/api/fleet/rollout/resume")
async def resume(request: web.Request) -> web.Response:
    return await _change(request, "resume")


@routes.post("/api/fleet/rollout/abort")
async def abort(request: web.Request) -> web.Response:
    return await _change(request, "abort")


@routes.get("/api/fleet")
async def fleet(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    view = await fleet_view(RolloutStore(ctx.db, ctx.clock), ctx.settings.openclaw_version)
    return web.json_response(
        {
            "target_version": view.target_version,
            "versions": view.versions,
            "os": {
                "security_updates": view.security_updates,
                "other_updates": view.other_updates,
                "reboot_required": view.reboot_required,
                "not_checked": view.os_unknown,
                "up_to_date": view.up_to_date,
                "oldest_check": view.oldest_check,
            },
            "rollout": rollout_json(view.rollout) if view.rollout else None,
        }
    )
