"""Customer VPS simulator: gives every simulated Hetzner server an Ubuntu 24.04
machine reachable over real SSH, with the OpenClaw gateway the install script sets up.

    hetzner = HetznerSim(time_scale=0.01)
    vpss = VpsSim(hetzner, base_dir=tmp_path / "vps")   # registers itself as listener
    await vpss.start()
    await hetzner.start()
    ...                                   # hcloud creates servers; asyncssh connects
    vpss.vps(server_id).commands.ssh()    # what ran, with exit statuses
    await hetzner.stop(); await vpss.stop()

Each server gets, on its own 127.x.y.z address: an SSH daemon on `ssh_port`
(listening from boot until power loss), and, once its `openclaw-gateway` unit runs,
a gateway on `gateway_port`. Commands run in real bash inside a per-VPS sandbox
(see `sim/vps_sandbox.py` for the isolation; it needs root and util-linux). The
simulated tools (`sudo`, `apt-get`, `curl`, `npm`, `node`, `openclaw`,
`systemctl`...) are shims in `sim/vps_guest*.py` (run by a command server inside each
VPS, see `sim/vps_shim.py`) that call back into this process on a per-VPS abstract
unix socket.

Knobs (in-process): `fail_command`, `crash_gateway`, `hang_gateway`,
`leak_memory`, `never_ready_version`, `set_usage`, `slow_boot`,
`request_pairing`. Over HTTP on the control server: `POST /_sim/vps/{id}/knobs`
with `{"knob": name, ...arguments}` and `GET /_sim/vps/{id}/commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sim.hetzner import HetznerSim
from sim.hetzner_model import ServerListener, SimImage, SimServer
from sim.vps_machine import Vps
from sim.vps_model import CommandFailure, CommandRecord, PairingRequest
from sim.vps_shim import compiled_shim

__all__ = ["CommandFailure", "CommandRecord", "Vps", "VpsSim"]

log = logging.getLogger(__name__)


class VpsSim(ServerListener):
    def __init__(
        self,
        hetzner: HetznerSim,
        *,
        base_dir: Path | None = None,
        ssh_port: int = 2222,
        gateway_port: int = 18789,
        time_scale: float | None = None,
        gateway_startup_s: float = 10.0,
        gateway_ready_after_s: float = 2.0,
    ) -> None:
        self.hetzner = hetzner
        self.state = hetzner.state
        self.ssh_port = ssh_port
        self.gateway_port = gateway_port
        self.time_scale = hetzner.time_scale if time_scale is None else time_scale
        self.gateway_startup_s = gateway_startup_s
        self.gateway_ready_after_s = gateway_ready_after_s
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="vps-sim-")) if base_dir is None else base_dir
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.machines: dict[int, Vps] = {}
        self.control_url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._snapshots = itertools.count(1)
        self._never_ready_all: set[str] = set()
        self._ssh_drop_rate = 0.0
        self.shim: Path | None = None
        hetzner.add_listener(self)

    # -- start/stop ----------------------------------------------------------

    async def start(self, host: str = "127.0.0.1") -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the simulator listens on loopback only, not {host}")
        app = web.Application()
        app.add_routes(
            [
                web.post("/_sim/vps/{id}/knobs", self._knob),
                web.get("/_sim/vps/{id}/commands", self._commands),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.control_url = f"http://{host}:{self._runner.addresses[0][1]}"
        self.shim = await asyncio.to_thread(compiled_shim)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for machine in list(self.machines.values()):
            await machine.remove()
        self.machines.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_dir:
            remover = await asyncio.create_subprocess_exec("rm", "-rf", str(self.base_dir))
            await remover.wait()

    # -- lookups -------------------------------------------------------------

    def vps(self, ref: int | str) -> Vps:
        """By server id, name or address."""
        for machine in self.machines.values():
            if ref in (machine.server.id, machine.server.name, machine.ip):
                return machine
        raise KeyError(f"no VPS {ref!r}")

    def admit(self, server: SimServer, peer: str, port: int) -> bool:
        return self.state.inbound_allowed(server, peer, "tcp", port)

    # -- ServerListener ------------------------------------------------------

    async def server_created(self, server: SimServer) -> None:
        machine = Vps(
            server,
            self.base_dir / f"{server.name}-{server.id}",
            ssh_port=self.ssh_port,
            gateway_port=self.gateway_port,
            time_scale=self.time_scale,
            admit=self.admit,
            gateway_startup_s=self.gateway_startup_s,
            gateway_ready_after_s=self.gateway_ready_after_s,
            shim=self.shim,
        )
        machine.gateway.faults.never_ready_versions |= self._never_ready_all
        machine.ssh_drop_rate = self._ssh_drop_rate
        self.machines[server.id] = machine
        image = self.state.images.get(server.image_id)
        if image is not None and "vps_disk" in image.payload:
            await machine.sandbox.restore_disk_from(Path(image.payload["vps_disk"]))
        self._prepare(machine)

    def server_booted(self, server: SimServer) -> None:
        machine = self.machines.get(server.id)
        if machine is None:
            return
        # Boot in the background: a slow boot must not hold up the Hetzner API.
        task = asyncio.get_running_loop().create_task(self._boot(machine))
        machine.booting = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _prepare(self, machine: Vps) -> None:
        """A new or rebuilt server boots next: set its sandbox up during the boot."""
        task = asyncio.get_running_loop().create_task(self._prepare_machine(machine))
        machine.preparing = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare_machine(self, machine: Vps) -> None:
        try:
            async with machine.power_lock:
                await machine.prepare()
        except Exception:  # the boot tries again, and reports what fails then
            log.exception("vps %s: preparing the boot failed", machine.server.name)
            await machine.sandbox.power_off()
        finally:
            if machine.preparing is asyncio.current_task():
                machine.preparing = None

    async def _boot(self, machine: Vps) -> None:
        try:
            async with machine.power_lock:
                await machine.boot()
        except Exception:
            log.exception("vps %s failed to boot", machine.server.name)
            await machine.power_off()
        finally:
            if machine.booting is asyncio.current_task():
                machine.booting = None

    async def server_powered_off(self, server: SimServer) -> None:
        if (machine := self.machines.get(server.id)) is not None:
            booting = machine.booting
            if booting is not None:  # a power cut interrupts a boot in progress
                booting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await booting
            async with machine.power_lock:
                await machine.power_off()

    async def server_rebuilt(self, server: SimServer) -> None:
        machine = self.machines.get(server.id)
        if machine is None:
            return
        await machine.rebuild()
        image = self.state.images.get(server.image_id)
        if image is not None and "vps_disk" in image.payload:
            await machine.sandbox.restore_disk_from(Path(image.payload["vps_disk"]))
        self._prepare(machine)

    async def server_deleted(self, server: SimServer) -> None:
        if (machine := self.machines.pop(server.id, None)) is not None:
            await machine.remove()

    async def snapshot_created(self, server: SimServer, image: SimImage) -> None:
        machine = self.machines.get(server.id)
        if machine is None:
            return
        target = self.base_dir / f"snapshot-{image.id}-{next(self._snapshots)}"
        await machine.sandbox.copy_disk_to(target)
        image.payload["vps_disk"] = str(target)

    # -- knobs ---------------------------------------------------------------

    def fail_command(
        self,
        ref: int | str,
        pattern: str,
        *,
        times: int = 1,
        exit_status: int = 1,
        stderr: str = "simulated failure\n",
    ) -> CommandFailure:
        failure = CommandFailure(pattern, times, exit_status, stderr)
        self.vps(ref).failures.append(failure)
        return failure

    async def crash_gateway(self, ref: int | str, *, times: int = 1, exit_code: int = 1) -> None:
        """The running gateway dies now (if it runs) and the next `times - 1` starts
        die during start-up; systemd's Restart= policy decides what follows."""
        gateway = self.vps(ref).gateway
        gateway.faults.crash_exit_code = exit_code
        if gateway.active_state == "active" and gateway.listening:
            gateway.faults.crash_next_starts += times - 1
            await gateway.crash(exit_code)
        else:
            gateway.faults.crash_next_starts += times

    def drop_ssh(self, rate: float) -> None:
        """This fraction of SSH commands, on every VPS now and later, has its
        connection aborted while it runs."""
        self._ssh_drop_rate = rate
        for machine in self.machines.values():
            machine.ssh_drop_rate = rate

    def hang_gateway(self, ref: int | str, hang: bool = True) -> None:
        """The gateway accepts connections and never answers."""
        self.vps(ref).gateway.faults.hang = hang

    def leak_memory(self, ref: int | str, mb_per_hour: float) -> None:
        """The gateway's memory grows by this much per simulated hour."""
        self.vps(ref).gateway.faults.leak_mb_per_hour = mb_per_hour

    def never_ready_version(self, version: str, ref: int | str | None = None) -> None:
        """Gateways running this OpenClaw version stay live but never ready."""
        for machine in [self.vps(ref)] if ref is not None else self.machines.values():
            machine.gateway.faults.never_ready_versions.add(version)
        if ref is None:
            self._never_ready_all.add(version)

    def set_usage(
        self,
        ref: int | str,
        *,
        memory_used_mb: int | None = None,
        disk_used_gb: float | None = None,
        disk_total_gb: float | None = None,
        memory_total_mb: int | None = None,
    ) -> None:
        usage = self.vps(ref).usage
        usage.memory_used_mb = memory_used_mb
        if disk_used_gb is not None:
            usage.disk_used_gb = disk_used_gb
        if disk_total_gb is not None:
            usage.disk_total_gb = disk_total_gb
        if memory_total_mb is not None:
            usage.memory_total_mb = memory_total_mb

    def slow_boot(self, ref: int | str, extra_s: float) -> None:
        """SSH comes up `extra_s` simulated seconds after Hetzner reports the boot."""
        self.vps(ref).slow_boot_s = extra_s

    def request_pairing(self, ref: int | str, device_name: str = "Chrome on macOS") -> str:
        """A new browser opened the Control UI and waits for `devices approve`."""
        request = PairingRequest(secrets.token_hex(4), device_name)
        self.vps(ref).pairing.append(request)
        return request.request_id

    def commands(self, ref: int | str) -> list[CommandRecord]:
        return list(self.vps(ref).commands.records)

    # -- HTTP ----------------------------------------------------------------

    def _machine(self, request: web.Request) -> Vps:
        raw = request.match_info["id"]
        machine = self.machines.get(int(raw)) if raw.isdigit() else None
        if machine is None:
            raise web.HTTPNotFound()
        return machine

    async def _knob(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        body: dict[str, Any] = await request.json()
        knob = body.pop("knob", None)
        knobs: dict[str, Callable[..., Any]] = {
            "fail_command": self.fail_command,
            "crash_gateway": self.crash_gateway,
            "hang_gateway": self.hang_gateway,
            "leak_memory": self.leak_memory,
            "never_ready_version": lambda ref, **kw: self.never_ready_version(ref=ref, **kw),
            "set_usage": self.set_usage,
            "slow_boot": self.slow_boot,
            "request_pairing": self.request_pairing,
        }
        if knob not in knobs:
            return web.json_response({"error": f"unknown knob {knob!r}"}, status=400)
        try:
            result = knobs[knob](machine.server.id, **body)
            if asyncio.iscoroutine(result):
                result = await result
        except TypeError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(
            {"ok": True, "result": result if isinstance(result, str) else None}
        )

    async def _commands(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        return web.json_response([vars(r) for r in machine.commands.records])
