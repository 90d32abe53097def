"""Building the provisioner from settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncssh

from core.clock import Clock
from core.settings import Settings
from db.connection import Database
from provisioner.budget import RequestBudget
from provisioner.config import ProvisionerConfig
from provisioner.hetzner import Hetzner
from provisioner.infra import Infra
from provisioner.reconciler import Reconciler
from provisioner.records import InstanceRecords
from provisioner.ssh import SshRunner


class Wakeup:
    """Lets `core/` wake the parts built after it: the reconciler, the outbox sender."""

    def __init__(self) -> None:
        self.targets: list[Callable[[], None]] = []

    def __call__(self) -> None:
        for target in self.targets:
            target()


def public_key(private_key_path: Path) -> str:
    key = asyncssh.read_private_key(private_key_path)
    return key.export_public_key("openssh").decode().strip()


def provisioner_config(settings: Settings) -> ProvisionerConfig:
    return ProvisionerConfig(
        server_type=settings.hcloud_server_type,
        image=settings.hcloud_image,
        locations=tuple(settings.hcloud_locations),
        max_servers=settings.max_servers,
        ssh_port=settings.ssh_port,
        gateway_port=settings.gateway_port,
        openclaw_version=settings.openclaw_version,
        backend_ips=tuple(settings.backend_ips),
        ssh_public_key=public_key(settings.ssh_private_key_path),
        start_grace_s=settings.start_grace_s,
        snapshot_retention_days=settings.snapshot_retention_days,
    )


def build_hetzner(settings: Settings, clock: Clock) -> Hetzner:
    """The process's one Hetzner client, with the one request budget."""
    return Hetzner(
        settings.hcloud_token.get_secret_value(),
        settings.hcloud_endpoint,
        budget=RequestBudget(),
        clock=clock,
    )


def build_ssh(settings: Settings) -> SshRunner:
    return SshRunner(settings.ssh_private_key_path, settings.ssh_port)


def build_reconciler(
    settings: Settings, db: Database, clock: Clock, http: aiohttp.ClientSession
) -> Reconciler:
    infra = Infra(
        provisioner_config(settings),
        db,
        clock,
        build_hetzner(settings, clock),
        build_ssh(settings),
        http,
        InstanceRecords(db, clock),
    )
    return Reconciler(infra)
