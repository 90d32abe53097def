"""Resources of the simulated Hetzner project and their API renderings.

`ServerListener` is the hook other simulators (the customer VPS in `sim/vps.py`)
use to follow a server's life; everything a VPS needs is readable from `SimServer`
(address, user_data, SSH keys injected at creation, labels) and from
`HetznerState.firewalls_for` / `HetznerState.inbound_allowed`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim.hetzner_catalog import Location, ServerType


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ActionDurations:
    """Real-world durations in seconds, before `time_scale` is applied."""

    create: float = 30.0  # create_server
    start: float = 5.0  # start_server / poweron: the machine is `running` after it
    boot: float = 25.0  # `running` → SSH answers (so ~60 s after a create)
    power_off: float = 5.0
    shutdown: float = 10.0
    reboot: float = 15.0  # includes the boot: SSH is back when it ends
    reset: float = 10.0
    rebuild: float = 40.0
    snapshot: float = 60.0
    delete: float = 5.0
    firewall: float = 2.0


@dataclass
class SimAction:
    id: int
    command: str
    resources: list[tuple[str, int]]
    started_at: float  # event-loop clock, for progress
    duration: float  # scaled seconds
    started: str = field(default_factory=utc_now)
    status: str = "running"  # running → success | error
    finished: str | None = None
    error: dict[str, str] | None = None

    def progress(self, now: float) -> int:
        if self.status != "running":
            return 100
        if self.duration <= 0:
            return 99
        return min(99, int((now - self.started_at) / self.duration * 100))

    def finish(self, error: tuple[str, str] | None = None) -> None:
        if self.status != "running":  # e.g. already failed by a server deletion
            return
        self.status = "error" if error else "success"
        self.error = {"code": error[0], "message": error[1]} if error else None
        self.finished = utc_now()

    def concerns(self, kind: str, resource_id: int) -> bool:
        return (kind, resource_id) in self.resources

    def to_api(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress(now),
            "started": self.started,
            "finished": self.finished,
            "resources": [{"id": rid, "type": kind} for kind, rid in self.resources],
            "error": self.error,
        }


@dataclass
class SimImage:
    id: int
    type: str  # system | snapshot | backup
    name: str | None
    description: str
    architecture: str
    os_flavor: str
    os_version: str | None
    status: str = "available"  # creating → available
    labels: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    created_from: tuple[int, str] | None = None
    disk_size: float = 5.0
    image_size: float | None = None
    # Free for other simulators: e.g. the VPS simulator stores the snapshotted disk.
    payload: dict[str, Any] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "name": self.name,
            "description": self.description,
            "image_size": self.image_size,
            "disk_size": self.disk_size,
            "created": self.created,
            "created_from": (
                {"id": self.created_from[0], "name": self.created_from[1]}
                if self.created_from
                else None
            ),
            "bound_to": None,
            "os_flavor": self.os_flavor,
            "os_version": self.os_version,
            "rapid_deploy": self.type == "system",
            "protection": {"delete": False},
            "deprecated": None,
            "deleted": None,
            "labels": self.labels,
            "architecture": self.architecture,
        }


@dataclass
class SimSshKey:
    id: int
    name: str
    public_key: str
    fingerprint: str
    labels: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "labels": self.labels,
            "created": self.created,
        }


@dataclass
class SimFirewall:
    id: int
    name: str
    rules: list[dict[str, Any]]
    labels: dict[str, str] = field(default_factory=dict)
    server_ids: list[int] = field(default_factory=list)  # applied directly
    selectors: list[str] = field(default_factory=list)  # applied by label selector
    created: str = field(default_factory=utc_now)


@dataclass
class SimServer:
    """A simulated server. Read by listeners; changed only by `HetznerState`."""

    id: int
    name: str
    server_type: ServerType
    location: Location
    image_id: int
    ip: str  # this server's own loopback address, e.g. 127.1.0.1
    ipv4_id: int  # primary IP ids, distinct per address
    ipv6_id: int
    ipv6_net: str
    labels: dict[str, str]
    user_data: str | None
    ssh_public_keys: list[str]  # injected at creation, kept across rebuilds
    root_password: str | None
    status: str = "initializing"
    created: str = field(default_factory=utc_now)
    busy_with: SimAction | None = None
    booted: bool = False  # SSH-ready: powered, started, and boot time elapsed
    power_epoch: int = 0  # bumped at every power loss; stale boot timers check it
    rescue_enabled: bool = False

    @property
    def locked(self) -> bool:
        return self.busy_with is not None and self.busy_with.status == "running"


class ServerListener:
    """Observer of server lifecycle events; override the ones you need.

    Each method may be a plain function or a coroutine function; the state awaits
    coroutines in order, and logs (never propagates) a listener's exception so a
    faulty observer cannot break the API. Power loss of any kind (poweroff,
    shutdown, reboot/reset start, rebuild start, a simulated death) is reported as
    `server_powered_off`; reboot, reset and power-on end in `server_booted`.
    """

    def server_created(self, server: SimServer) -> Awaitable[None] | None:
        """The server exists (status `initializing`); not reachable yet."""
        return None

    def server_booted(self, server: SimServer) -> Awaitable[None] | None:
        """The server is running and its SSH daemon would now answer."""
        return None

    def server_powered_off(self, server: SimServer) -> Awaitable[None] | None:
        """The machine lost power or is going down; SSH must stop answering."""
        return None

    def server_rebuilt(self, server: SimServer) -> Awaitable[None] | None:
        """The disk was overwritten with `server.image_id`; wipe local state."""
        return None

    def server_deleted(self, server: SimServer) -> Awaitable[None] | None:
        """The server is gone for good; release its address."""
        return None

    def snapshot_created(self, server: SimServer, image: SimImage) -> Awaitable[None] | None:
        """A snapshot of `server` became available; `image.payload` may carry its disk."""
        return None
