"""Hetzner Cloud API simulator on loopback, for the real `hcloud` client.

    sim = HetznerSim(token="t", time_scale=0.01, server_limit=25)
    url = await sim.start()  # "http://127.0.0.1:PORT/v1": hcloud's api_endpoint
    ...
    await sim.stop()

Every `/v1` answer carries `RateLimit-*` headers and goes through, in order: added
latency, bearer token (401), the token bucket (429), scripted route faults, the
handler. Faults are set in-process through `sim.faults` or over HTTP under `/_sim/`
(no token needed; see `control_routes`). Other simulators follow server lifecycles
through `sim.add_listener(ServerListener)`; see `sim/hetzner_model.py`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from typing import Any

from aiohttp import web

from sim.hetzner_api import HetznerApi, read_json
from sim.hetzner_faults import RouteFaults, TokenBucket
from sim.hetzner_firewalls import FirewallRoutes
from sim.hetzner_model import ActionDurations, ServerListener
from sim.hetzner_rules import ApiError, invalid_input
from sim.hetzner_state import HetznerState

__all__ = ["ActionDurations", "HetznerFaults", "HetznerSim", "ServerListener"]

API_PREFIX = "/v1"


class HetznerFaults:
    """Faults on demand; each knob is also reachable over HTTP under `/_sim/faults`."""

    def __init__(self, state: HetznerState, routes: RouteFaults) -> None:
        self._state = state
        self._routes = routes

    def fail_next(
        self,
        method: str,
        path: str,
        code: str,
        *,
        status: int | None = None,
        message: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls to `method path` (wildcards allowed, no /v1) fail
        with `code` (status derived from the code unless given)."""
        self._routes.fail_next(method, path, code, status=status, message=message, times=times)

    def chaos(self, rate: float, *, seed: int | None = None) -> None:
        """Fail this fraction of API calls at random (see `RouteFaults.set_chaos`)."""
        self._routes.set_chaos(rate, seed=seed)

    @property
    def chaos_injected(self) -> int:
        return self._routes.chaos_injected

    def out_of_capacity(self, location: str, unavailable: bool = True) -> None:
        """Creating a server in `location` answers 412 `resource_unavailable`."""
        if unavailable:
            self._state.out_of_capacity.add(location)
        else:
            self._state.out_of_capacity.discard(location)

    def add_latency(
        self,
        seconds: float,
        method: str = "*",
        path: str = "*",
        *,
        after: bool = False,
        times: int | None = None,
    ) -> None:
        """Delay matching calls by wall-clock seconds (for `times` calls, or for
        good); `after=True` delays the answer after the request took effect, so a
        client timeout makes hcloud send a POST that already worked a second time."""
        self._routes.add_latency(seconds, method, path, after=after, times=times)

    def fail_next_action(
        self,
        command: str,
        code: str = "action_failed",
        message: str = "simulated action failure",
        times: int = 1,
    ) -> None:
        """The next `times` actions with this command (`create_server`,
        `start_server`, `stop_server`, `reboot_server`, `create_image`, ...) end in
        status `error`."""
        queue = self._state.action_failures.setdefault(command, [])
        queue.extend([(code, message)] * times)

    async def kill_server(self, server_id: int) -> None:
        """The server dies: status `off` without anyone asking, listeners told."""
        await self._state.kill_server(server_id)

    @property
    def pending_route_failures(self) -> int:
        """Scripted route failures not yet served."""
        return sum(f.remaining for f in self._routes.failures)

    def clear(self) -> None:
        self._routes.clear()
        self._state.out_of_capacity.clear()
        self._state.action_failures.clear()


class HetznerSim:
    def __init__(
        self,
        *,
        token: str = "sim-hcloud-token",  # noqa: S107 - a simulator's well-known token
        time_scale: float = 1.0,
        server_limit: int = 25,
        rate_limit: int = 3600,
        rate_refill_per_s: float = 1.0,
        durations: ActionDurations | None = None,
        address_pool: str = "127.1.0.0/16",
    ) -> None:
        self.token = token
        self.time_scale = time_scale
        self.state = HetznerState(
            time_scale=time_scale,
            server_limit=server_limit,
            durations=durations,
            address_pool=address_pool,
        )
        self.rate_limit = TokenBucket(rate_limit, rate_refill_per_s, time_scale)
        self._route_faults = RouteFaults()
        self.faults = HetznerFaults(self.state, self._route_faults)
        self.url = ""  # set by start(); ends in /v1
        self.base_url = ""  # without /v1, for the control routes
        self._runner: web.AppRunner | None = None

    def add_listener(self, listener: ServerListener) -> None:
        self.state.listeners.append(listener)

    def set_rate_limit(self, capacity: int, refill_per_s: float) -> None:
        """Reconfigure the bucket; it starts full."""
        self.rate_limit.configure(capacity, refill_per_s, self.time_scale)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        api = HetznerApi(self.state)
        app.add_routes(api.routes(API_PREFIX))
        app.add_routes(FirewallRoutes(api).routes(API_PREFIX))
        app.add_routes(self.control_routes())
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the simulator listens on loopback only, not {host}")
        # A short shutdown timeout: a request held by a latency fault must not
        # keep stop() waiting for a minute.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        self.url = self.base_url + API_PREFIX
        return self.url

    async def stop(self) -> None:
        await self.state.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- request pipeline ----------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await self._control(request, handler)
        method, path = request.method, request.path[len(API_PREFIX) :]
        if delay := self._route_faults.delay(method, path, after=False):
            await asyncio.sleep(delay)
        response: web.StreamResponse
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError("unauthorized", "unable to authenticate")
            if not self.rate_limit.take():
                raise ApiError(
                    "rate_limit_exceeded",
                    f"limit of {self.rate_limit.capacity} requests per hour reached",
                )
            if (error := self._route_faults.take_failure(method, path)) is not None:
                raise error
            response = await handler(request)
        except ApiError as error:
            response = web.json_response(error.to_api(), status=error.status)
        except web.HTTPNotFound:
            response = web.json_response(ApiError("not_found", "not found").to_api(), status=404)
        except web.HTTPMethodNotAllowed:
            not_allowed = ApiError("method_not_allowed", "method not allowed", status=405)
            response = web.json_response(not_allowed.to_api(), status=405)
        response.headers.update(self.rate_limit.headers())
        response.headers["X-Correlation-Id"] = secrets.token_hex(8)
        if delay := self._route_faults.delay(method, path, after=True):
            await asyncio.sleep(delay)
        return response

    async def _control(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as error:
            response = web.json_response(error.to_api(), status=error.status)
        return response

    # -- control routes (no token) -------------------------------------------

    def control_routes(self) -> list[web.RouteDef]:
        """`GET /_sim/state`; `POST /_sim/faults/route` {method, path, code, status?,
        message?, times?}; `POST /_sim/faults/capacity` {location, available};
        `POST /_sim/faults/latency` {seconds, method?, path?, after?, times?};
        `POST /_sim/faults/action` {command, code?, message?, times?};
        `DELETE /_sim/faults`; `POST /_sim/servers/{id}/kill`;
        `POST /_sim/rate_limit` {capacity, refill_per_s}."""
        return [
            web.get("/_sim/state", self._state_summary),
            web.post("/_sim/faults/route", self._fault_route),
            web.post("/_sim/faults/capacity", self._fault_capacity),
            web.post("/_sim/faults/latency", self._fault_latency),
            web.post("/_sim/faults/action", self._fault_action),
            web.delete("/_sim/faults", self._faults_clear),
            web.post("/_sim/servers/{id}/kill", self._kill),
            web.post("/_sim/rate_limit", self._set_rate_limit),
        ]

    async def _state_summary(self, request: web.Request) -> web.Response:
        servers = [
            {
                "id": s.id,
                "name": s.name,
                "ip": s.ip,
                "status": s.status,
                "booted": s.booted,
                "locked": s.locked,
                "labels": s.labels,
                "location": s.location.name,
            }
            for s in self.state.servers.values()
        ]
        return web.json_response(
            {
                "servers": servers,
                "out_of_capacity": sorted(self.state.out_of_capacity),
                "rate_limit_remaining": self.rate_limit.remaining,
            }
        )

    @staticmethod
    def _field(body: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
        value = body.get(name, default)
        if value is ... or not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise invalid_input(name, f"{name} must be a {kind.__name__}")
        return value

    async def _fault_route(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        status = body.get("status")
        self.faults.fail_next(
            self._field(body, "method", str),
            self._field(body, "path", str),
            self._field(body, "code", str),
            status=int(status) if status is not None else None,
            message=body.get("message"),
            times=self._field(body, "times", int, 1),
        )
        return web.json_response({"ok": True})

    async def _fault_capacity(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        available = self._field(body, "available", bool, False)
        self.faults.out_of_capacity(self._field(body, "location", str), not available)
        return web.json_response({"ok": True})

    async def _fault_latency(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or seconds < 0:
            raise invalid_input("seconds", "seconds must be a non-negative number")
        self.faults.add_latency(
            float(seconds),
            self._field(body, "method", str, "*"),
            self._field(body, "path", str, "*"),
            after=self._field(body, "after", bool, False),
            times=body.get("times") if isinstance(body.get("times"), int) else None,
        )
        return web.json_response({"ok": True})

    async def _fault_action(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        self.faults.fail_next_action(
            self._field(body, "command", str),
            self._field(body, "code", str, "action_failed"),
            self._field(body, "message", str, "simulated action failure"),
            self._field(body, "times", int, 1),
        )
        return web.json_response({"ok": True})

    async def _faults_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})

    async def _kill(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not raw.isdigit():
            raise ApiError("not_found", "server not found")
        await self.faults.kill_server(int(raw))
        return web.json_response({"ok": True})

    async def _set_rate_limit(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        refill = body.get("refill_per_s", 1.0)
        if not isinstance(refill, int | float) or refill < 0:
            raise invalid_input("refill_per_s", "refill_per_s must be a non-negative number")
        self.set_rate_limit(self._field(body, "capacity", int), float(refill))
        return web.json_response({"ok": True})
