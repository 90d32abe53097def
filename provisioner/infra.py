"""Everything a step may use, in one place: the clients, the records, the settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp

from core.clock import Clock
from db.connection import Database
from provisioner.config import ProvisionerConfig
from provisioner.hetzner import Hetzner
from provisioner.records import InstanceRecords
from provisioner.ssh import SshRunner


@dataclass
class Infra:
    config: ProvisionerConfig
    db: Database
    clock: Clock
    hetzner: Hetzner
    ssh: SshRunner
    http: aiohttp.ClientSession
    records: InstanceRecords
    ssh_key_id: int | None = None  # set once the project's key and firewall are ensured
    project_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Instances between the MAX_SERVERS check and their server's id being recorded.
    creating: set[str] = field(default_factory=set)
    # Gateway passwords between install and verify, in memory only: after a crash,
    # verify reads the password back from the server instead.
    passwords: dict[str, str] = field(default_factory=dict, repr=False)
