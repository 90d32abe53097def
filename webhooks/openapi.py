"""GET /api/openapi.json: the HTTP contract of DESIGN.md, described once."""

from __future__ import annotations

from typing import Any

from aiohttp import web

routes = web.RouteTableDef()

_ERROR = {"$ref": "#/components/schemas/Error"}
_ADMIN: list[dict[str, list[str]]] = [{"ApiKey": []}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input",
        401: "Missing or wrong credentials",
        404: "Unknown instance",
        409: "Conflicts with the instance's state",
        413: "Body over 1 MiB",
        429: "Rate limited (Retry-After)",
    }
    return {str(code): _json(_ERROR, text[code]) for code in codes}


_INSTANCE_ID = {
    "name": "instance_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^inst_[a-z0-9]{12}$"},
}


def _action(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": _ADMIN,
        "parameters": [_INSTANCE_ID],
        "responses": {
            "202": _json({"$ref": "#/components/schemas/ActionResult"}, "Recorded"),
            **_errors(400, 401, 404, 409, 429),
        },
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return {"post": operation}


_UPGRADE = {
    "type": "object",
    "required": ["version"],
    "properties": {
        "version": {"type": "string", "examples": ["2026.9.6"]},
        "canary": {"type": "integer", "description": "default: 1, or 5 % of the fleet"},
        "batch_size": {"type": "integer", "description": "default: ROLLOUT_BATCH_SIZE"},
        "max_failures": {"type": "integer", "description": "default: ROLLOUT_MAX_FAILURES"},
        "soak_s": {"type": "number", "description": "default: ROLLOUT_SOAK_S"},
        "respect_quiet_window": {"type": "boolean", "default": True},
    },
}


def _rollout_change(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": _ADMIN,
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Rollout"}, "Changed"),
                **_errors(401, 404, 409, 429),
            },
        }
    }


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "OpenClaw Hosted operations API", "version": "1"},
    "components": {
        "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Instance": {
                "type": "object",
                "properties": {
                    "instance_id": {"type": "string"},
                    "customer_id": {"type": "string"},
                    "customer_email": {"type": "string"},
                    "customer_name": {"type": ["string", "null"]},
                    "status": {
                        "enum": ["provisioning", "active", "suspended", "failed", "destroyed"]
                    },
                    "desired_state": {"enum": ["active", "suspended", "destroyed"]},
                    "desired_reason": {"type": "string"},
                    "step": {"type": ["string", "null"]},
                    "attempts": {"type": "integer"},
                    "last_error": {"type": ["string", "null"]},
                    "server_ip": {"type": ["string", "null"]},
                    "hetzner_server_id": {"type": ["integer", "null"]},
                    "server_name": {"type": "string"},
                    "location": {"type": ["string", "null"]},
                    "setup_url": {"type": ["string", "null"]},
                    "plan": {"enum": ["monthly", "lifetime", "manual"]},
                    "subscription_id": {"type": ["string", "null"]},
                    "admin_hold": {"type": ["string", "null"]},
                    "hold_reason": {"type": ["string", "null"]},
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                    "last_health_check": {"type": ["string", "null"]},
                    "health_status": {"enum": ["healthy", "unhealthy", "unknown"]},
                },
            },
            "Rollout": {
                "type": "object",
                "properties": {
                    "rollout_id": {"type": "integer"},
                    "version": {"type": "string"},
                    "previous_version": {"type": "string"},
                    "state": {"enum": ["running", "paused", "halted", "aborted", "done"]},
                    "phase": {"enum": ["canary", "soak", "batches"]},
                    "canary": {"type": "integer"},
                    "batch_size": {"type": "integer"},
                    "max_failures": {"type": "integer"},
                    "soak_s": {"type": "number"},
                    "respect_quiet_window": {"type": "boolean"},
                    "halt_reason": {"type": ["string", "null"]},
                    "waiting_for": {"type": ["string", "null"]},
                    "instances": {
                        "type": "object",
                        "description": "instance ids by state: upgrading, upgraded, "
                        "rolling_back, rolled_back, failed, skipped",
                    },
                    "remaining": {"type": "integer"},
                    "left_out": {"type": "array", "items": {"type": "string"}},
                    "versions": {"type": "object"},
                },
            },
            "Fleet": {
                "type": "object",
                "properties": {
                    "target_version": {"type": "string"},
                    "versions": {"type": "object"},
                    "os": {"type": "object"},
                    "rollout": {
                        "oneOf": [{"$ref": "#/components/schemas/Rollout"}, {"type": "null"}]
                    },
                },
            },
            "ActionResult": {
                "type": "object",
                "properties": {
                    "instance_id": {"type": "string"},
                    "status": {"type": "string"},
                    "desired_state": {"type": "string"},
                    "operation_id": {"type": "integer"},
                    "operation": {"type": "string"},
                    "warning": {"type": ["string", "null"]},
                },
            },
        },
    },
    "paths": {
        "/api/webhook/paddle": {
            "post": {
                "summary": "Paddle Billing notification (verified by Paddle-Signature)",
                "parameters": [
                    {
                        "name": "Paddle-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json({"type": "object"}, "Stored and applied (or a duplicate)"),
                    **_errors(400, 401, 413),
                },
            }
        },
        "/api/provision": {
            "post": {
                "summary": "Create an instance: comped, or billed by a subscription (idempotent)",
                "security": _ADMIN,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["customer_email"],
                                "properties": {
                                    "customer_email": {
                                        "type": "string",
                                        "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                                    },
                                    "customer_name": {"type": "string"},
                                    "paddle_subscription_id": {
                                        "type": "string",
                                        "pattern": "^sub_[a-z0-9]{10,40}$",
                                    },
                                    "plan": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {
                                "instance_id": {"type": "string"},
                                "status": {"type": "string"},
                                "estimated_ready_seconds": {"type": "integer"},
                            },
                        },
                        "Accepted",
                    ),
                    **_errors(400, 401, 429),
                },
            }
        },
        "/api/instances": {
            "get": {
                "summary": "List instances, newest first",
                "security": _ADMIN,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string"}},
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {
                        "name": "per_page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "instances": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Instance"},
                                },
                                "meta": {"type": "object"},
                            },
                        },
                        "One page",
                    ),
                    **_errors(400, 401, 429),
                },
            }
        },
        "/api/instances/{instance_id}": {
            "get": {
                "summary": "One instance",
                "security": _ADMIN,
                "parameters": [_INSTANCE_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Instance"}, "The instance"),
                    **_errors(401, 404, 429),
                },
            }
        },
        "/api/health/{instance_id}": {
            "get": {
                "summary": "The monitor's last view of an instance's gateway",
                "security": _ADMIN,
                "parameters": [_INSTANCE_ID],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "instance_id": {"type": "string"},
                                "status": {"type": "string"},
                                "gateway_reachable": {"type": "boolean"},
                                "uptime_seconds": {"type": ["integer", "null"]},
                                "last_checked": {"type": ["string", "null"]},
                            },
                        },
                        "Health",
                    ),
                    **_errors(401, 404, 429),
                },
            }
        },
        "/api/instances/{instance_id}/suspend": _action(
            "Suspend with a reason; holds until an admin resumes",
            {
                "type": "object",
                "required": ["reason"],
                "properties": {"reason": {"type": "string"}},
            },
        ),
        "/api/instances/{instance_id}/resume": _action("Lift an admin hold or override billing"),
        "/api/instances/{instance_id}/reprovision": _action("Queue a rebuild with a new password"),
        "/api/instances/{instance_id}/destroy": _action("Destroy for good (warns if still paid)"),
        "/api/instances/{instance_id}/retry": _action("Queue a retry of a failed instance"),
        "/api/fleet": {
            "get": {
                "summary": "Active instances by OpenClaw version and OS update status",
                "security": _ADMIN,
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Fleet"}, "The fleet"),
                    **_errors(401, 429),
                },
            }
        },
        "/api/fleet/upgrade": {
            "post": {
                "summary": "Roll an OpenClaw version out: canary, soak, then batches",
                "security": _ADMIN,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _UPGRADE}},
                },
                "responses": {
                    "202": _json({"$ref": "#/components/schemas/Rollout"}, "Started"),
                    **_errors(400, 401, 409, 429),
                },
            }
        },
        "/api/fleet/rollout": {
            "get": {
                "summary": "The open rollout and its progress, else the latest",
                "security": _ADMIN,
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Rollout"}, "The rollout"),
                    **_errors(401, 404, 429),
                },
            }
        },
        "/api/fleet/rollout/pause": _rollout_change("Pause: no new upgrades start"),
        "/api/fleet/rollout/resume": _rollout_change("Resume (after a halt: failures forgiven)"),
        "/api/fleet/rollout/abort": _rollout_change("Abort: upgrades not started are canceled"),
        "/healthz": {
            "get": {
                "summary": "Backend liveness",
                "responses": {"200": _json({"type": "object"}, "Alive")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Prometheus text format"}},
            }
        },
    },
}


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
