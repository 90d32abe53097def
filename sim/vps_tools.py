"""`systemctl`, `journalctl`, `df` and `free` of a simulated VPS, answered by the
simulator (the guest shim forwards its argv here) because their truth — the
gateway unit's state, its journal, resource figures — lives in the simulator.

Only `openclaw-gateway` is a real unit here; every other unit (`ssh`,
`unattended-upgrades`, ...) is recorded and reported enabled and active.
Enabling writes the `multi-user.target.wants` symlink, which the guest shim does
in the VPS's own filesystem before calling in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.vps_machine import Vps

GATEWAY = "openclaw-gateway"
UNIT_PATH = "/etc/systemd/system/openclaw-gateway.service"
WANTS_PATH = "/etc/systemd/system/multi-user.target.wants/openclaw-gateway.service"


def _result(stdout: str = "", stderr: str = "", status: int = 0) -> dict[str, Any]:
    return {"stdout": stdout, "stderr": stderr, "status": status}


def _unit_name(arg: str) -> str:
    return arg.removesuffix(".service")


class SystemTools:
    def __init__(self, vps: Vps) -> None:
        self.vps = vps

    async def call(self, argv: list[str]) -> dict[str, Any]:
        if not argv:
            return _result(stderr="no tool\n", status=2)
        tool, args = argv[0], argv[1:]
        if tool == "systemctl":
            return await self.systemctl(args)
        if tool == "journalctl":
            return self.journalctl(args)
        if tool == "df":
            return self.df(args)
        if tool == "free":
            return self.free(args)
        return _result(stderr=f"{tool}: not simulated\n", status=127)

    # -- systemctl -----------------------------------------------------------

    async def systemctl(self, args: list[str]) -> dict[str, Any]:
        flags = [a for a in args if a.startswith("-")]
        words = [a for a in args if not a.startswith("-")]
        props: list[str] = []
        for i, arg in enumerate(args):
            if arg == "-p" and i + 1 < len(args):
                props += args[i + 1].split(",")
                words = [w for w in words if w != args[i + 1]]
            elif arg.startswith("--property="):
                props += arg.split("=", 1)[1].split(",")
            elif arg.startswith("-p") and len(arg) > 2:
                props += arg[2:].split(",")
        if not words:
            return _result(stdout="UNIT LOAD ACTIVE SUB DESCRIPTION\n")
        verb, units = words[0], [_unit_name(u) for u in words[1:]]
        gateway = self.vps.gateway
        if verb == "daemon-reload":
            gateway.load(self.vps.sandbox.read(UNIT_PATH))
            return _result()
        others = [u for u in units if u != GATEWAY]
        for unit in others:
            recorded = self.vps.units.setdefault(unit, {"enabled": "enabled", "active": "active"})
            recorded["last"] = verb
        if GATEWAY not in units:
            return self._other_units(verb, others, props, "--value" in flags)
        if verb in ("start", "restart", "enable", "reload-or-restart", "try-restart"):
            if verb != "enable" or "--now" in flags:
                if gateway.config is None:
                    gateway.load(self.vps.sandbox.read(UNIT_PATH))
                if gateway.config is None:
                    return _result(
                        stderr=f"Failed to {verb} {GATEWAY}.service: Unit {GATEWAY}.service"
                        " not found.\n",
                        status=5,
                    )
                if verb == "start" or verb == "enable":
                    await gateway.start()
                elif verb != "try-restart" or gateway.active_state == "active":
                    await gateway.restart()
            return _result()
        if verb in ("stop", "disable", "kill"):
            if verb != "disable" or "--now" in flags:
                await gateway.stop()
            return _result()
        if verb == "is-active":
            state = gateway.active_state
            return _result(stdout=state + "\n", status=0 if state == "active" else 3)
        if verb == "is-failed":
            failed = gateway.active_state == "failed"
            return _result(stdout=gateway.active_state + "\n", status=0 if failed else 1)
        if verb == "is-enabled":
            enabled = self.vps.sandbox.exists(WANTS_PATH)
            return _result(
                stdout=("enabled" if enabled else "disabled") + "\n", status=0 if enabled else 1
            )
        if verb == "show":
            return self._show(props, "--value" in flags)
        if verb == "status":
            return self._status()
        if verb == "reset-failed":
            if gateway.active_state == "failed":
                gateway.active_state, gateway.sub_state = "inactive", "dead"
            return _result()
        return _result()

    def _other_units(
        self, verb: str, units: list[str], props: list[str], value_only: bool
    ) -> dict[str, Any]:
        if verb in ("is-active", "is-enabled"):
            word = "active" if verb == "is-active" else "enabled"
            return _result(stdout="".join(f"{word}\n" for _ in units))
        if verb == "show":
            values = {"ActiveState": "active", "SubState": "running", "UnitFileState": "enabled"}
            lines = [(p, values.get(p, "")) for p in props or list(values)]
            return _result(
                stdout="".join(v + "\n" if value_only else f"{p}={v}\n" for p, v in lines)
            )
        if verb == "status":
            return _result(
                stdout="".join(f"● {u}.service\n     Active: active (running)\n" for u in units)
            )
        return _result()

    def _properties(self) -> dict[str, str]:
        gateway = self.vps.gateway
        started = gateway.started_at
        stamp = ""
        if started is not None:
            stamp = time.strftime(
                "%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - (time.monotonic() - started))
            )
        memory = gateway.memory_bytes()
        return {
            "Id": f"{GATEWAY}.service",
            "LoadState": "loaded" if gateway.config is not None else "not-found",
            "ActiveState": gateway.active_state,
            "SubState": gateway.sub_state,
            "Result": gateway.result,
            "MainPID": str(gateway.main_pid),
            "NRestarts": str(gateway.n_restarts),
            "ExecMainStatus": str(gateway.exec_main_status),
            "MemoryCurrent": str(memory) if memory else "[not set]",
            "ActiveEnterTimestamp": stamp,
            "ExecMainStartTimestamp": stamp,
            "UnitFileState": "enabled" if self.vps.sandbox.exists(WANTS_PATH) else "disabled",
            "FragmentPath": UNIT_PATH if gateway.config is not None else "",
        }

    def _show(self, props: list[str], value_only: bool) -> dict[str, Any]:
        values = self._properties()
        names = props or list(values)
        if value_only:
            return _result(stdout="".join(values.get(p, "") + "\n" for p in names))
        return _result(stdout="".join(f"{p}={values.get(p, '')}\n" for p in names))

    def _status(self) -> dict[str, Any]:
        gateway = self.vps.gateway
        values = self._properties()
        text = (
            f"● {GATEWAY}.service - OpenClaw Gateway\n"
            f"     Loaded: {values['LoadState']} ({UNIT_PATH}; {values['UnitFileState']})\n"
            f"     Active: {gateway.active_state} ({gateway.sub_state})\n"
            f"   Main PID: {gateway.main_pid}\n"
        )
        text += "".join(line + "\n" for line in self.vps.journal[-10:])
        return _result(stdout=text, status=0 if gateway.active_state == "active" else 3)

    # -- journalctl, df, free ------------------------------------------------

    def journalctl(self, args: list[str]) -> dict[str, Any]:
        lines = list(self.vps.journal)
        count: int | None = None
        for i, arg in enumerate(args):
            if arg in ("-n", "--lines") and i + 1 < len(args) and args[i + 1].isdigit():
                count = int(args[i + 1])
            elif arg.startswith("--lines="):
                count = int(arg.split("=", 1)[1] or 0)
            elif arg.startswith("-n") and arg[2:].isdigit():
                count = int(arg[2:])
        units = [args[i + 1] for i, a in enumerate(args) if a == "-u" and i + 1 < len(args)]
        if units and all(_unit_name(u) != GATEWAY for u in units):
            lines = []
        if count is not None:
            lines = lines[-count:] if count else []
        if not lines and "-q" not in args and "--quiet" not in args:
            return _result(stdout="-- No entries --\n")
        return _result(stdout="".join(line + "\n" for line in lines))

    def df(self, args: list[str]) -> dict[str, Any]:
        usage = self.vps.usage
        total_k = int(usage.disk_total_gb * 1024 * 1024)
        used_k = int(usage.disk_used_gb * 1024 * 1024)
        avail_k = max(0, total_k - used_k)
        percent = f"{round(used_k * 100 / total_k) if total_k else 0}%"
        if any(a in ("-h", "--human-readable", "-H") for a in args):
            sizes = [
                f"{usage.disk_total_gb:.0f}G",
                f"{usage.disk_used_gb:.1f}G",
                f"{avail_k / 1048576:.0f}G",
            ]
        else:
            sizes = [str(total_k), str(used_k), str(avail_k)]
        if any(a.startswith("--output") for a in args):
            return _result(
                stdout=f"Use%\n{percent:>4}\n" if "pcent" in " ".join(args) else f"{sizes[1]}\n"
            )
        header = "Filesystem     1K-blocks    Used Available Use% Mounted on\n"
        return _result(stdout=header + f"/dev/sda1 {sizes[0]} {sizes[1]} {sizes[2]} {percent} /\n")

    def free(self, args: list[str]) -> dict[str, Any]:
        usage = self.vps.usage
        total = usage.memory_total_mb
        used = usage.memory_used_mb
        if used is None:
            used = usage.memory_base_used_mb + self.vps.gateway.memory_bytes() // (1024 * 1024)
        used = min(used, total)
        cache = min(400, total - used)
        free_mb, available = total - used - cache, total - used
        divisor = {"-b": 1 / (1024 * 1024), "-k": 1 / 1024, "-m": 1, "-g": 1024}
        unit = next((divisor[a] for a in args if a in divisor), 1 / 1024)  # default KiB

        def fmt(mb: int) -> str:
            return str(int(mb / unit))

        header = (
            "               total        used        free      shared  buff/cache   available\n"
        )
        figures = (total, used, free_mb, 4, cache, available)
        mem = "Mem:    " + "".join(f"{fmt(n):>12}" for n in figures) + "\n"
        swap = f"Swap:   {fmt(0):>12}{fmt(0):>12}{fmt(0):>12}\n"
        return _result(stdout=header + mem + swap)
