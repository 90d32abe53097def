"""Records and fault knobs of simulated VPSs (plain data, no I/O)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field


@dataclass
class CommandRecord:
    """One command: an SSH session's command (`via="ssh"`) or a shimmed tool the
    VPS ran (`via="shim"`, `command` is its argv joined with spaces)."""

    command: str
    via: str
    user: str = "root"
    exit_status: int | None = None  # None while running
    stdout: str = ""
    stderr: str = ""
    started: float = field(default_factory=time.time)
    failed_by_knob: bool = False


@dataclass
class CommandFailure:
    """Knob: commands matching `pattern` (a regular expression searched in the SSH
    command line and in every shimmed tool's command line) fail `times` times with
    `exit_status` and `stderr`, then run normally."""

    pattern: str
    times: int = 1
    exit_status: int = 1
    stderr: str = "simulated failure\n"

    def matches(self, command: str) -> bool:
        return self.times > 0 and re.search(self.pattern, command) is not None


@dataclass
class Usage:
    """Knob: resource figures reported by `df` and `free` (MiB / GiB)."""

    memory_total_mb: int = 3814  # a CAX11's 4 GB as `free -m` shows it
    memory_base_used_mb: int = 310  # the OS, without the gateway
    disk_total_gb: float = 38.1
    disk_used_gb: float = 2.4
    memory_used_mb: int | None = None  # fixed figure overriding the computed one


@dataclass
class PairingRequest:
    request_id: str
    device_name: str
    created: float = field(default_factory=time.time)


class CommandLog:
    """Per-VPS record of commands; bounded so a chatty monitor cannot grow it forever."""

    def __init__(self, limit: int = 5000) -> None:
        self.limit = limit
        self.records: list[CommandRecord] = []

    def add(self, record: CommandRecord) -> CommandRecord:
        self.records.append(record)
        if len(self.records) > self.limit:
            del self.records[: len(self.records) - self.limit]
        return record

    def ssh(self) -> list[CommandRecord]:
        return [r for r in self.records if r.via == "ssh"]

    def matching(self, pattern: str) -> list[CommandRecord]:
        return [r for r in self.records if re.search(pattern, r.command)]
