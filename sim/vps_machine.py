"""One simulated Ubuntu 24.04 machine behind a simulated Hetzner server.

It owns the sandbox (disk and running system), the SSH daemon, the gateway unit,
the journal and the command log, and answers its guest shims' calls (`rpc`).
`VpsSim` in `sim/vps.py` creates one per server and drives it from the Hetzner
lifecycle events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from sim.hetzner_model import SimServer
from sim.vps_cloudinit import INSTANCE_ID_PATH, write_first_boot
from sim.vps_gateway import GatewayLaunch, GatewayUnit, UnitConfig, load_json, read_password
from sim.vps_model import CommandFailure, CommandLog, CommandRecord, PairingRequest, Usage
from sim.vps_sandbox import UBUNTU_PATH, Sandbox, python_for_guest
from sim.vps_shim import SERVER_COMMAND, write_guest, write_wrappers
from sim.vps_ssh import SshDaemon
from sim.vps_tools import UNIT_PATH, WANTS_PATH, SystemTools

OUTPUT_LIMIT = 64 * 1024

log = logging.getLogger(__name__)


class Vps:
    def __init__(
        self,
        server: SimServer,
        directory: Path,
        *,
        ssh_port: int,
        gateway_port: int,
        time_scale: float,
        admit: Callable[[SimServer, str, int], bool],
        gateway_startup_s: float,
        gateway_ready_after_s: float,
        shim: Path | None = None,
    ) -> None:
        self.server = server
        self.shim = shim  # the compiled C shim, else a slower shell stand-in
        self.ssh_port = ssh_port
        self.gateway_port = gateway_port
        self.time_scale = time_scale
        # The guest's calls come in on an abstract unix socket (the VPS shares the host's
        # network namespace), named unguessably: only the VPS is told the name.
        self.control = f"ocsim-vps-{server.id}-{secrets.token_hex(12)}"
        self._control_server: asyncio.Server | None = None
        self.sandbox = Sandbox(directory, server.name)
        self.sandbox.make_disk()
        self.commands = CommandLog()
        self.journal: list[str] = []
        self.failures: list[CommandFailure] = []
        self.ssh_drop_rate = 0.0  # this fraction of SSH commands loses its connection
        self.usage = Usage()
        self.slow_boot_s = 0.0
        self.pairing: list[PairingRequest] = []
        self.units: dict[str, dict[str, str]] = {}  # other units: recorded, always fine
        self.host_key: asyncssh.SSHKey | None = None
        self.ssh: SshDaemon | None = None
        self._admit = admit
        self.gateway = GatewayUnit(
            ip=server.ip,
            admit=lambda peer: peer == server.ip or admit(server, peer, self.gateway_port),
            read_launch=self._read_launch,
            journal=self.log,
            time_scale=time_scale,
            startup_s=gateway_startup_s,
            ready_after_s=gateway_ready_after_s,
        )
        self.tools = SystemTools(self)
        self.preparing: asyncio.Task[None] | None = None
        self.prepared = False  # powered on up to SSH (see `prepare`)
        self.booting: asyncio.Task[None] | None = None
        # Power changes happen one at a time: at small time scales a reboot's boot can
        # begin while its power-off is still tearing the machine down.
        self.power_lock = asyncio.Lock()

    @property
    def ip(self) -> str:
        return self.server.ip

    @property
    def reachable(self) -> bool:
        return self.ssh is not None and self.ssh.running

    def log(self, line: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        self.journal.append(
            f"{stamp} {self.server.name} openclaw-gateway[{self.gateway.main_pid}]: {line}"
        )
        del self.journal[:-2000]

    # -- lifecycle -----------------------------------------------------------

    async def prepare(self) -> None:
        """What a boot does before SSH answers, but nothing anyone outside can see: the
        sandbox powered on, the shims and their command server, and on an instance's
        first boot what cloud-init writes and its `runcmd` (no SSH, no gateway yet).
        `VpsSim` starts it while the simulated boot is under way, so that the
        simulator's own work does not lengthen the boot; `boot` does it itself when
        the machine was not prepared."""
        if self.prepared:
            return
        # cloud-init's per-instance modules run on the first boot of each instance: a
        # fresh disk, or a disk copied from a snapshot of another server (whose
        # recorded instance id is not this server's), as on a real Hetzner server.
        recorded = (self.sandbox.read(INSTANCE_ID_PATH) or "").strip()
        runcmd: list[str] = []
        if self.sandbox.fresh or recorded != str(self.server.id):
            runcmd = write_first_boot(
                self.sandbox.path,
                self.server.id,
                self.server.name,
                self.server.user_data,
                list(self.server.ssh_public_keys),
                self.log,
            )
        if self._control_server is None:
            self._control_server = await asyncio.start_unix_server(
                self._guest_call, path="\0" + self.control
            )
        python, bind = python_for_guest()
        write_guest(self.sandbox.guest, python, self.shim, self._identity())
        write_wrappers(self.sandbox.path)
        await self.sandbox.power_on(bind)
        self._load_host_key()
        env = {"PATH": UBUNTU_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        if not await self.sandbox.start_daemon(SERVER_COMMAND, env, "guest-server.log"):
            log.warning("%s: no guest command server, shims run slower", self.server.name)
        if runcmd:  # one shell script, as cloud-init runs it, late in the boot
            await self.run("\n".join(runcmd), via="cloud-init")
        self.prepared = True

    async def boot(self) -> None:
        if self.slow_boot_s > 0:
            await asyncio.sleep(self.slow_boot_s * self.time_scale)
        await self.prepare()
        if self.sandbox.exists(WANTS_PATH):
            self.gateway.load(self.sandbox.read(UNIT_PATH))
            await self.gateway.start()
        assert self.host_key is not None
        self.ssh = SshDaemon(
            ip=self.ip,
            port=self.ssh_port,
            host_key=self.host_key,
            authorized_keys=self._authorized_keys,
            admit=lambda peer: self._admit(self.server, peer, self.ssh_port),
            handler=self._session,
        )
        await self.ssh.start()

    async def power_off(self) -> None:
        for task in (self.preparing, self.booting):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.preparing = self.booting = None
        self.prepared = False
        if self.ssh is not None:
            await self.ssh.stop()
            self.ssh = None
        await self.gateway.power_loss()
        await self.sandbox.power_off()

    async def rebuild(self) -> None:
        await self.power_off()
        await self.sandbox.wipe()
        self.journal.clear()
        self.units.clear()
        self.host_key = None

    async def remove(self) -> None:
        await self.power_off()
        if self._control_server is not None:
            self._control_server.close()
            self._control_server = None
        await self.sandbox.remove()

    # -- first boot ------------------------------------------------------------

    def _load_host_key(self) -> None:
        text = self.sandbox.read("/etc/ssh/ssh_host_ed25519_key")
        self.host_key = asyncssh.import_private_key(text) if text else None
        if self.host_key is None:
            self.host_key = asyncssh.generate_private_key("ssh-ed25519")

    def _authorized_keys(self) -> list[str]:
        text = self.sandbox.read("/root/.ssh/authorized_keys") or ""
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    def _identity(self) -> dict[str, Any]:
        return {
            "server_id": self.server.id,
            "name": self.server.name,
            "ip": self.ip,
            "control": self.control,
            "gateway_port": self.gateway_port,
        }

    # -- commands ------------------------------------------------------------

    def take_failure(self, command: str) -> CommandFailure | None:
        for failure in self.failures:
            if failure.matches(command):
                failure.times -= 1
                return failure
        return None

    def env(self, user: str = "root", home: str = "/root") -> dict[str, str]:
        return {
            "PATH": UBUNTU_PATH,
            "HOME": home,
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
        }

    async def run(self, command: str, via: str = "sim") -> CommandRecord:
        """Run a command as root without SSH (cloud-init, tests' own inspection)."""
        record = self.commands.add(CommandRecord(command, via))
        proc = await self.sandbox.spawn(command, self.env())
        out, err = await proc.communicate()
        record.stdout = out.decode(errors="replace")[-OUTPUT_LIMIT:]
        record.stderr = err.decode(errors="replace")[-OUTPUT_LIMIT:]
        record.exit_status = proc.returncode
        return record

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or "exec bash -l"
        record = self.commands.add(CommandRecord(command, "ssh"))
        failure = self.take_failure(command)
        if failure is not None:
            record.failed_by_knob, record.stderr = True, failure.stderr
            record.exit_status = failure.exit_status
            process.stderr.write(failure.stderr.encode())
            process.exit(failure.exit_status)
            return
        env = self.env()
        # Ubuntu's sshd_config: AcceptEnv LANG LC_* and nothing else.
        for key, value in (process.env or {}).items():
            if key == "LANG" or key.startswith("LC_"):
                env[str(key)] = str(value)
        peer = process.get_extra_info("peername") or ("", 0)
        env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {self.ip} {self.ssh_port}"
        proc = await self.sandbox.spawn(command, env)
        assert proc.stdin and proc.stdout and proc.stderr
        if self.ssh_drop_rate and random.random() < self.ssh_drop_rate:  # mid-command
            record.stderr = "connection dropped by the chaos knob"
            conn = process.channel.get_connection()
            asyncio.get_running_loop().call_later(random.uniform(0.01, 0.3), conn.abort)
        out: list[bytes] = []
        err: list[bytes] = []

        async def pump_in() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(asyncssh.Error, OSError, ConnectionError):
                while data := await process.stdin.read(65536):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            with contextlib.suppress(OSError):
                proc.stdin.close()

        async def pump_out(source: asyncio.StreamReader, sink: Any, keep: list[bytes]) -> None:
            while data := await source.read(65536):
                keep.append(data)
                with contextlib.suppress(OSError, asyncssh.Error):
                    sink.write(data)

        feeder = asyncio.get_running_loop().create_task(pump_in())
        try:
            await asyncio.gather(
                pump_out(proc.stdout, process.stdout, out),
                pump_out(proc.stderr, process.stderr, err),
            )
            status = await proc.wait()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        record.stdout = b"".join(out).decode(errors="replace")[-OUTPUT_LIMIT:]
        record.stderr = b"".join(err).decode(errors="replace")[-OUTPUT_LIMIT:]
        record.exit_status = status
        process.exit(status if status >= 0 else 128 - status)

    # -- the guest's calls ---------------------------------------------------

    async def _guest_call(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One call of a guest tool: a JSON line in, a JSON answer out."""
        try:
            body = json.loads(await reader.readline())
            answer = await self.rpc(body if isinstance(body, dict) else {})
            writer.write(json.dumps(answer).encode())
            await writer.drain()
        except (ValueError, OSError):
            log.exception("%s: guest call failed", self.server.name)
        finally:
            writer.close()

    async def rpc(self, body: dict[str, Any]) -> dict[str, Any]:
        op, argv = body.get("op"), [str(a) for a in body.get("argv", [])]
        user = str(body.get("user", "root"))
        if op in ("begin", "call"):  # "call": begin, then the tool's answer at once
            line = " ".join(argv)
            record = self.commands.add(CommandRecord(line, "shim", user=user))
            failure = self.take_failure(line)
            if failure is not None:
                record.failed_by_knob, record.exit_status = True, failure.exit_status
                record.stderr = failure.stderr
                return {"fail": {"status": failure.exit_status, "stderr": failure.stderr}}
            return await self.tools.call(argv) if op == "call" else {}
        if op == "tool":
            return await self.tools.call(argv)
        if op == "pairing":
            return {"pending": [vars(p) for p in self.pairing]}
        if op == "approve":
            request = next((p for p in self.pairing if p.request_id in argv), None)
            if request is not None:
                self.pairing.remove(request)
            return {"approved": vars(request) if request else None}
        return {"error": f"unknown op {op!r}"}

    # -- what the gateway reads at start -------------------------------------

    def _read_launch(self, unit: UnitConfig) -> GatewayLaunch:
        disk = self.sandbox
        package = load_json(disk.read("/usr/lib/node_modules/openclaw/package.json"))
        version = package.get("version") if isinstance(package.get("version"), str) else None
        if disk.read("/usr/lib/node_modules/openclaw/.ocsim-scripts-skipped") is not None:
            version = None  # npm skipped its install scripts: the build is incomplete
        node = (disk.read("/var/lib/ocsim/node-version") or "").strip().lstrip("v")
        home = "/root" if unit.user == "root" else f"/home/{unit.user}"
        config = load_json(disk.read(f"{home}/.openclaw/openclaw.json"))
        env_text = "".join(disk.read(p) or "" for p in unit.environment_files)
        env_text += disk.read(f"{home}/.openclaw/.env") or ""
        gateway = config.get("gateway") if isinstance(config.get("gateway"), dict) else {}
        assert isinstance(gateway, dict)
        auth = gateway.get("auth") if isinstance(gateway.get("auth"), dict) else {}
        assert isinstance(auth, dict)
        return GatewayLaunch(
            version=version,
            node_major=int(node.split(".")[0]) if node.split(".")[0].isdigit() else None,
            password=read_password(env_text, config),
            auth_mode=str(auth.get("mode", "token")),
            bind=str(gateway.get("bind", "loopback")),
            port=unit.port or int(gateway.get("port", self.gateway_port)),
        )
