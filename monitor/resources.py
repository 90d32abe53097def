"""The resource check: disk, memory and the gateway's memory of every active server,
read over SSH (one session per server, one script printing every figure).

OpenClaw leaks memory, so this runs hourly (`RESOURCE_CHECK_INTERVAL_S`). It reads and
parses here; what the figures mean (alerts, the leak's restart in the quiet window) is
decided and recorded by `core.resources`. It never acts on a server itself. A server
that cannot be read (unreachable, output not understood) is recorded as such and the
others are checked all the same; reachability is the health monitor's to alert on.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import aiosqlite

from core.admin_actions import AdminActions
from core.clock import Clock
from core.models import Status
from core.resources import (
    DISK_HIGH,
    MEMORY_HIGH,
    ResourceFigures,
    ResourceRecords,
    Thresholds,
)
from db.connection import Database
from provisioner.provisioning import reboot_hour
from provisioner.ssh import SshError, SshRunner

log = logging.getLogger(__name__)

GATEWAY_UNIT = "openclaw-gateway.service"
MARK = "@@ocm "
_UNSET_BYTES = 2**64 - 1  # systemd's "no figure" before it learned to print [not set]
_MIB = 1024 * 1024

# One session, every figure. POSIX df in KiB (no line wrapping), free in MiB, and the
# gateway unit's properties; each part after a marker line, stderr folded in. Then, for
# /fleet: the upgrades apt would install (a simulation, `-s`, from the package lists
# the daily apt timer refreshes: no network, no lock), whether an installed update
# waits for a reboot, and the OpenClaw version.
SCRIPT = f"""export LC_ALL=C
echo '{MARK}df'
df -P -k / 2>&1
echo '{MARK}free'
free -m 2>&1
echo '{MARK}gateway'
systemctl show {GATEWAY_UNIT} -p ActiveState,MemoryCurrent 2>&1
echo '{MARK}updates'
apt-get -s -o Debug::NoLocking=1 dist-upgrade 2>/dev/null | grep '^Inst ' || true
echo '{MARK}reboot'
if [ -e /var/run/reboot-required ]; then echo required; else echo none; fi
echo '{MARK}openclaw'
openclaw --version 2>/dev/null || true
echo '{MARK}end'
"""
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?")


class ParseError(ValueError):
    """The output of the figures script was not understood."""


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK) :].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return sections


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ParseError(f"{what}: not a number: {text[:40]!r}") from None
    if value < 0:
        raise ParseError(f"{what}: negative: {value}")
    return value


def parse_df(lines: list[str]) -> tuple[float, float, float]:
    """`df -P -k /` → (used %, used GB, total GB). The percentage is used / (used +
    available), as df counts it (blocks reserved for root are neither)."""
    rows = [line.split() for line in lines if not line.startswith("Filesystem")]
    rows = [row for row in rows if len(row) >= 6]
    if not rows:
        raise ParseError(f"df: no filesystem line in {' | '.join(lines)[:200]!r}")
    row = rows[-1]
    total_k = _int(row[-5], "df total")
    used_k = _int(row[-4], "df used")
    available_k = _int(row[-3], "df available")
    if total_k == 0:
        raise ParseError("df: a filesystem of size 0")
    usable = used_k + available_k
    percent = used_k * 100 / usable if usable else 100.0
    return round(percent, 1), round(used_k / _MIB, 1), round(total_k / _MIB, 1)


def parse_free(lines: list[str]) -> tuple[int, int]:
    """`free -m` → (used MB, total MB)."""
    header = next((line.split() for line in lines if line.split()[:1] == ["total"]), None)
    mem = next((line.split() for line in lines if line.startswith("Mem:")), None)
    if header is None or mem is None:
        raise ParseError(f"free: no Mem: line in {' | '.join(lines)[:200]!r}")
    values = mem[1:]
    try:
        total, used = values[header.index("total")], values[header.index("used")]
    except (ValueError, IndexError):
        raise ParseError(f"free: columns not understood: {' | '.join(lines)[:200]!r}") from None
    return _int(used, "free used"), _int(total, "free total")


def parse_gateway(lines: list[str]) -> tuple[str, int | None]:
    """`systemctl show -p ActiveState,MemoryCurrent` → (state, memory MB or None)."""
    properties = dict(line.split("=", 1) for line in lines if "=" in line)
    state = properties.get("ActiveState", "").strip()
    if not state:
        raise ParseError(f"systemctl: no ActiveState in {' | '.join(lines)[:200]!r}")
    memory = properties.get("MemoryCurrent", "").strip()
    if not memory.isdigit() or int(memory) >= _UNSET_BYTES:
        return state, None  # "[not set]": the unit runs no process, or accounting is off
    return state, int(memory) // _MIB


def parse_updates(lines: list[str]) -> tuple[int, int]:
    """`apt-get -s dist-upgrade`'s `Inst` lines → (pending, from the security pocket)."""
    installs = [line for line in lines if line.startswith("Inst ")]
    return len(installs), len([line for line in installs if "-security" in line])


def parse_figures(output: str) -> ResourceFigures:
    """The figures script's output → figures. Raises ParseError on anything unexpected."""
    sections = _sections(output)
    missing = [name for name in ("df", "free", "gateway", "end") if name not in sections]
    if missing:
        raise ParseError(f"output incomplete, no {', '.join(missing)}: {output[-200:]!r}")
    disk_pct, disk_used, disk_total = parse_df(sections["df"])
    memory_used, memory_total = parse_free(sections["free"])
    state, gateway_memory = parse_gateway(sections["gateway"])
    # Read since /fleet: absent from an older script's output, which is no error.
    pending = security = None
    if "updates" in sections:
        pending, security = parse_updates(sections["updates"])
    reboot = sections.get("reboot")
    version = _VERSION.search(" ".join(sections.get("openclaw", [])))
    return ResourceFigures(
        disk_used_pct=disk_pct,
        disk_used_gb=disk_used,
        disk_total_gb=disk_total,
        memory_used_mb=memory_used,
        memory_total_mb=memory_total,
        gateway_state=state,
        gateway_memory_mb=gateway_memory,
        updates_pending=pending,
        security_updates=security,
        reboot_required=None if reboot is None else "required" in reboot,
        openclaw_version=version.group() if version else None,
    )


@dataclass
class ResourceSummary:
    """One run of the check over the fleet."""

    checked: int = 0  # readings recorded
    failed: dict[str, str] = field(default_factory=dict)  # instance id → why not read
    alerts: dict[str, int] = field(default_factory=dict)  # alert kind → how many told
    restarts_queued: list[str] = field(default_factory=list)

    @property
    def disk_alerts(self) -> int:
        return self.alerts.get(DISK_HIGH, 0)

    @property
    def memory_alerts(self) -> int:
        return self.alerts.get(MEMORY_HIGH, 0)


class ResourceCheck:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ssh: SshRunner,
        admin: AdminActions,
        *,
        disk_alert_percent: float,
        memory_alert_mb: int,
        concurrency: int = 8,
        timeout_s: float = 60,
        quiet_hour: Callable[[str], int] = reboot_hour,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ssh = ssh
        self.timeout_s = timeout_s
        self.records = ResourceRecords(
            db, clock, admin, Thresholds(disk_alert_percent, memory_alert_mb), quiet_hour
        )
        self._slots = asyncio.Semaphore(max(1, concurrency))

    async def check(self) -> ResourceSummary:
        """Read every active server (a few at a time), record what was read, then queue
        the leak restarts whose quiet window has come."""
        instances = await self.db.fetch_all(
            "SELECT id, server_ip, ssh_host_key FROM instances WHERE status = ? ORDER BY id",
            (Status.ACTIVE.value,),
        )
        summary = ResourceSummary()
        await asyncio.gather(*(self._guarded(row, summary) for row in instances))
        summary.restarts_queued = await self.queue_due_restarts()
        if summary.failed:
            log.info(
                "resources: %d read, %d not: %s",
                summary.checked,
                len(summary.failed),
                ", ".join(sorted(summary.failed)),
            )
        return summary

    async def queue_due_restarts(self) -> list[str]:
        """The cheap part alone (no SSH): queue the leak restarts that are due."""
        return await self.records.queue_due_restarts()

    async def _guarded(self, row: aiosqlite.Row, summary: ResourceSummary) -> None:
        instance_id = str(row["id"])
        async with self._slots:
            try:
                error = await self._check_one(row, summary)
            except Exception as unexpected:  # one server never stops the others
                log.exception("resource check of %s crashed", instance_id)
                error = f"internal error: {type(unexpected).__name__}: {unexpected}"
        if error is not None:
            summary.failed[instance_id] = error
            try:
                await self.records.record_failure(instance_id, error)
            except Exception:
                log.exception("could not record the failed resource check of %s", instance_id)

    async def _check_one(self, row: aiosqlite.Row, summary: ResourceSummary) -> str | None:
        """Read and record one server; the reason when it could not be read."""
        instance_id = str(row["id"])
        ip, host_key = row["server_ip"], row["ssh_host_key"]
        if not ip or not host_key:
            return "no address or pinned host key"
        try:
            result = await self.ssh.run(ip, host_key, SCRIPT, timeout_s=self.timeout_s)
        except SshError as error:
            return f"{error.code}: {error}"
        try:
            figures = parse_figures(result.output)
        except ParseError as error:
            status = f" (exit {result.exit_status})" if result.exit_status else ""
            return f"parse_error{status}: {error}"
        judgement = await self.records.record(instance_id, figures)
        if judgement is not None:  # None: no longer active, nothing to record
            summary.checked += 1
            for kind, _ in judgement.alerts:
                summary.alerts[kind] = summary.alerts.get(kind, 0) + 1
        return None
