"""The `openclaw-gateway` systemd unit of one simulated VPS and the gateway it runs.

The gateway is not a real process: starting the unit opens, after the real start-up
time (scaled), an HTTP server on `<VPS address>:<gateway port>` that answers like
OpenClaw's (FIELD-NOTES.md). Connections pass through a gate that applies the
Hetzner firewall (traffic from the VPS's own address is local and always passes)
and the `hang` fault (accept, never answer). The unit follows systemd's rules
that matter to an operator: `Restart=`, `RestartSec=`, `RestartPreventExitStatus=`,
`NRestarts`, `ActiveState`/`SubState`, and a journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Admit = Callable[[str], bool]

CONTROL_UI = """<!doctype html>
<html><head><title>OpenClaw Control</title></head>
<body><div id="app">OpenClaw Control UI</div>
<script>/* pairing: open the owner link from `openclaw dashboard` */</script>
</body></html>
"""


@dataclass
class GatewayFaults:
    crash_next_starts: int = 0  # the next N starts die shortly after start
    crash_exit_code: int = 1
    hang: bool = False  # accept TCP, never answer
    leak_mb_per_hour: float = 0.0
    never_ready_versions: set[str] = field(default_factory=set)


@dataclass
class UnitConfig:
    exec_start: str = ""
    user: str = "root"
    restart: str = "no"
    restart_sec: float = 0.1
    prevent_exit: set[int] = field(default_factory=set)
    environment_files: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> UnitConfig:
        config = cls()
        for raw in text.splitlines():
            key, sep, value = raw.strip().partition("=")
            if not sep or key.startswith(("#", ";")):
                continue
            value = value.strip()
            if key == "ExecStart":
                config.exec_start = value
            elif key == "User":
                config.user = value
            elif key == "Restart":
                config.restart = value
            elif key == "RestartSec":
                config.restart_sec = float(re.sub(r"[^0-9.]", "", value) or 0)
            elif key == "RestartPreventExitStatus":
                config.prevent_exit = {int(v) for v in value.split() if v.isdigit()}
            elif key == "EnvironmentFile":
                config.environment_files.append(value.lstrip("-"))
        return config

    @property
    def port(self) -> int | None:
        match = re.search(r"--port[ =](\d+)", self.exec_start)
        return int(match.group(1)) if match else None


@dataclass
class GatewayLaunch:
    """What the simulator read from the VPS's disk when the unit started."""

    version: str | None  # installed openclaw, None when missing
    node_major: int | None
    password: str | None
    auth_mode: str
    bind: str
    port: int


class _Gate(asyncio.Protocol):
    """Wraps aiohttp's protocol: firewall and hang decided at accept time."""

    def __init__(self, gateway: GatewayUnit) -> None:
        self.gateway = gateway
        self.inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        if not self.gateway.admit(peer[0] if peer else ""):
            transport.abort()  # a refused connection, as a REJECT rule would
            return
        if self.gateway.faults.hang:
            self.gateway.hung.add(transport)
            return
        assert self.gateway.http is not None
        self.inner = self.gateway.http()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class GatewayUnit:
    def __init__(
        self,
        *,
        ip: str,
        admit: Admit,
        read_launch: Callable[[UnitConfig], GatewayLaunch],
        journal: Callable[[str], None],
        time_scale: float,
        startup_s: float = 10.0,
        ready_after_s: float = 2.0,
    ) -> None:
        self.ip = ip
        self.admit = admit
        self.read_launch = read_launch
        self.journal = journal
        self.time_scale = time_scale
        self.startup_s = startup_s
        self.ready_after_s = ready_after_s
        self.faults = GatewayFaults()
        self.config: UnitConfig | None = None
        self.active_state = "inactive"
        self.sub_state = "dead"
        self.result = "success"
        self.n_restarts = 0
        self.main_pid = 0
        self.exec_main_status = 0
        self.started_at: float | None = None  # loop time of the current start
        self.live_at: float | None = None
        self.launch: GatewayLaunch | None = None
        self.http: web.Server | None = None
        self.hung: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._pid_counter = 1000

    # -- systemctl -----------------------------------------------------------

    def load(self, unit_text: str | None) -> None:
        self.config = UnitConfig.parse(unit_text) if unit_text is not None else None

    async def start(self) -> None:
        if self.active_state in ("active", "activating") and self.sub_state != "auto-restart":
            return
        await self._halt()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.active_state != "inactive":
            self.journal("Stopping openclaw-gateway.service - OpenClaw Gateway...")
        await self._halt()
        if self.active_state != "inactive":
            self.journal("Stopped openclaw-gateway.service - OpenClaw Gateway.")
        self.active_state, self.sub_state, self.main_pid = "inactive", "dead", 0
        self.started_at = self.live_at = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def power_loss(self) -> None:
        await self._halt()
        self.active_state, self.sub_state, self.main_pid = "inactive", "dead", 0
        self.started_at = self.live_at = None

    async def crash(self, exit_code: int = 1) -> None:
        """The running gateway dies now; on return the unit shows the exit."""
        if self.active_state != "active":
            return
        await self._halt()
        self._task = asyncio.get_running_loop().create_task(self._exited(exit_code))
        await asyncio.sleep(0)  # let the exit be recorded before the caller looks

    # -- observation ---------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._server is not None

    def memory_bytes(self) -> int:
        if self.active_state != "active" or self.started_at is None:
            return 0
        simulated_h = (time.monotonic() - self.started_at) / max(self.time_scale, 1e-9) / 3600
        mb = 1050 + self.faults.leak_mb_per_hour * simulated_h
        return int(mb * 1024 * 1024)

    def ready(self) -> bool:
        if self.live_at is None or self.launch is None:
            return False
        if self.launch.version in self.faults.never_ready_versions:
            return False
        return time.monotonic() - self.live_at >= self.ready_after_s * self.time_scale

    # -- the simulated process -----------------------------------------------

    async def _run(self) -> None:
        config = self.config
        if config is None:
            self.active_state, self.sub_state, self.result = "failed", "failed", "resources"
            return
        self._pid_counter += 137
        self.main_pid = self._pid_counter
        self.active_state, self.sub_state = "active", "running"
        self.started_at, self.live_at = time.monotonic(), None
        self.journal("Started openclaw-gateway.service - OpenClaw Gateway.")
        launch = self.read_launch(config)
        self.launch = launch
        if launch.version is None:
            self.journal(f"openclaw-gateway.service: Failed to execute {config.exec_start!r}")
            await self._exited(203)
            return
        if launch.node_major is None or launch.node_major < 24:
            self.journal("Error: node:sqlite is unavailable (needs Node >= 24.16)")
            await self._exited(1)
            return
        if launch.bind != "loopback" and launch.auth_mode == "none":
            self.journal("Refusing to bind gateway to a public interface without auth")
            await self._exited(78)
            return
        await asyncio.sleep(self.startup_s * self.time_scale)
        if self.faults.crash_next_starts > 0:
            self.faults.crash_next_starts -= 1
            self.journal("[gateway] fatal: uncaught exception (simulated crash)")
            await self._exited(self.faults.crash_exit_code)
            return
        await self._listen(launch.port)
        self.live_at = time.monotonic()
        self.journal(f"[gateway] listening on ws://0.0.0.0:{launch.port} (PID {self.main_pid})")
        await asyncio.Event().wait()  # runs until stopped, crashed or powered off

    async def _exited(self, code: int) -> None:
        await self._close_listener()
        self.exec_main_status = code
        self.journal(f"openclaw-gateway.service: Main process exited, code=exited, status={code}")
        config = self.config or UnitConfig()
        restart = config.restart in ("always", "on-failure") and code not in config.prevent_exit
        self.main_pid, self.started_at, self.live_at = 0, None, None
        if not restart:
            self.active_state, self.sub_state, self.result = "failed", "failed", "exit-code"
            self.journal("openclaw-gateway.service: Failed with result 'exit-code'.")
            return
        self.active_state, self.sub_state = "activating", "auto-restart"
        await asyncio.sleep(config.restart_sec * self.time_scale)
        self.n_restarts += 1
        self.journal(f"openclaw-gateway.service: Scheduled restart job, counter {self.n_restarts}.")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _halt(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_listener()

    async def _listen(self, port: int) -> None:
        self.http = web.Server(self._handle, access_log=None)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.ip, port))
        sock.setblocking(False)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gate(self), sock=sock
        )

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        for transport in self.hung:
            transport.abort()
        self.hung.clear()
        if server is not None:
            server.close()
            if self.http is not None:
                await self.http.shutdown(0.1)
            await server.wait_closed()
        self.http = None

    # -- HTTP ----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        launch = self.launch
        assert launch is not None
        authorized = bool(launch.password) and (
            request.headers.get("Authorization") == f"Bearer {launch.password}"
        )
        if request.path in ("/healthz", "/health"):
            body: dict[str, Any] = {"ok": True, "status": "live"}
            if authorized:
                body |= {"version": launch.version, "uptime": self._uptime()}
            return web.json_response(body)
        if request.path == "/readyz":
            if self.ready():
                return web.json_response({"ready": True})
            return web.json_response({"ready": False, "reason": "starting"}, status=503)
        if request.path == "/startupz":
            return web.json_response({"started": True})
        if request.path == "/control-ui-config.json":
            if not authorized:
                return web.json_response(
                    {"ok": False, "error": {"type": "unauthorized", "message": "Unauthorized"}},
                    status=401,
                )
            return web.json_response(
                {"basePath": "/", "assistantName": "OpenClaw", "version": launch.version}
            )
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return web.Response(text=CONTROL_UI, content_type="text/html")
        return web.json_response({"error": "Not Found"}, status=404)

    def _uptime(self) -> float:
        return round((time.monotonic() - (self.live_at or time.monotonic())) / self.time_scale, 1)


def read_password(env_text: str | None, config: dict[str, Any]) -> str | None:
    for line in (env_text or "").splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == "OPENCLAW_GATEWAY_PASSWORD":
            return value.strip().strip("'\"") or None
    auth = config.get("gateway", {}).get("auth", {}) if isinstance(config, dict) else {}
    password = auth.get("password") if isinstance(auth, dict) else None
    return password if isinstance(password, str) and password else None


def load_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
