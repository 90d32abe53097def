"""A small world for the reconciler: Hetzner and customer servers simulated on
loopback, the real hcloud client and asyncssh, a real SQLite file."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest

from core.billing import Prices
from core.clock import SystemClock
from core.models import ACTOR_API
from core.policy import PolicyTimings
from core.services import CoreServices, build_core
from db.connection import Database
from provisioner.budget import RequestBudget
from provisioner.config import ProvisionerConfig
from provisioner.hetzner import Hetzner
from provisioner.infra import Infra
from provisioner.reconciler import Reconciler
from provisioner.records import InstanceRecords
from provisioner.ssh import SshRunner
from sim.hetzner import HetznerSim
from sim.loopback import unique_pool
from sim.paddle import PaddleSim
from sim.vps import VpsSim
from tests.conftest import LIFETIME_PRICE, MONTHLY_PRICE

TOKEN = "world-token"
TIME_SCALE = 0.002

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="simulated servers need root")


@dataclass
class World:
    hetzner_sim: HetznerSim
    vps: VpsSim
    core: CoreServices
    infra: Infra
    reconciler: Reconciler

    async def provision(self, email: str = "ada@example.com") -> str:
        result = await self.core.admin.provision(email, "Ada", None, ACTOR_API)
        return result.instance_id

    async def instance(self, instance_id: str) -> dict[str, Any]:
        row = await self.core.db.fetch_one("SELECT * FROM instances WHERE id = ?", (instance_id,))
        assert row is not None
        return dict(row)

    async def notifications(self, kind: str) -> list[dict[str, Any]]:
        rows = await self.core.db.fetch_all(
            "SELECT * FROM notifications WHERE kind = ? ORDER BY id", (kind,)
        )
        return [dict(r) for r in rows]

    async def operations(self, instance_id: str) -> list[tuple[str, str]]:
        rows = await self.core.db.fetch_all(
            "SELECT kind, state FROM operations WHERE instance_id = ? ORDER BY id", (instance_id,)
        )
        return [(r["kind"], r["state"]) for r in rows]

    def servers(self) -> list[Any]:
        return list(self.hetzner_sim.state.servers.values())


def config_for(public_key: str, **overrides: Any) -> ProvisionerConfig:
    values: dict[str, Any] = {
        "server_type": "cax11",
        "image": "ubuntu-24.04",
        "locations": ("fsn1", "nbg1", "hel1"),
        "max_servers": 50,
        "ssh_port": 2222,
        "gateway_port": 18789,
        "openclaw_version": "2026.9.6",
        "backend_ips": ("127.0.0.1",),
        "ssh_public_key": public_key,
        "start_grace_s": 5,
        "step_backoff_s": (0.01, 0.02, 0.04),
        "ssh_ready_timeout_s": 10,
        "shutdown_timeout_s": 0.2,
    }
    return ProvisionerConfig(**(values | overrides))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    if os.geteuid() != 0:
        pytest.skip("simulated servers need root")
    key_path = tmp_path / "id_ed25519"
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(key_path)
    key_path.chmod(0o600)
    public_key = key.export_public_key("openssh").decode().strip()
    # A loopback /16 of its own, so that simulated servers of parallel runs never meet.
    hetzner_sim = HetznerSim(token=TOKEN, time_scale=TIME_SCALE, address_pool=unique_pool())
    await hetzner_sim.start()
    vps = VpsSim(hetzner_sim, base_dir=tmp_path / "vps", gateway_ready_after_s=1.0)
    await vps.start()
    db = await Database.open(tmp_path / "world.db")
    clock = SystemClock()
    http = aiohttp.ClientSession()
    reconciler: Reconciler | None = None
    core = build_core(
        db, clock, timings=PolicyTimings(), prices=Prices(MONTHLY_PRICE, LIFETIME_PRICE),
        lifetime_cap=100, wake=lambda: reconciler.wake() if reconciler else None,
    )  # fmt: skip
    hetzner = Hetzner(
        TOKEN, hetzner_sim.url, budget=RequestBudget(), clock=clock, retry_backoff=lambda n: 0.01
    )
    infra = Infra(
        config_for(public_key), db, clock, hetzner, SshRunner(key_path, 2222), http,
        InstanceRecords(db, clock),
    )  # fmt: skip
    reconciler = Reconciler(infra)
    yield World(hetzner_sim, vps, core, infra, reconciler)
    await reconciler.stop()
    hetzner.close()
    await http.close()
    await db.close()
    await vps.stop()
    await hetzner_sim.stop()
    # Snapshot disks stay (Hetzner keeps images too); every server's sandbox is gone.
    machines = [p for p in (tmp_path / "vps").iterdir() if not p.name.startswith("snapshot-")]
    assert machines == [], "a simulated server was left behind"


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)


# The outside world of a service run as a real process (see service_process.py).
@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[tuple[HetznerSim, VpsSim]]:
    hetzner = HetznerSim(token=TOKEN, time_scale=0.01, address_pool=unique_pool())
    await hetzner.start()
    vps = VpsSim(hetzner, base_dir=tmp_path / "vps", gateway_ready_after_s=0.5)
    await vps.start()
    paddle = PaddleSim(api_key="pdl_sdbx_apikey_test")
    await paddle.start()
    yield hetzner, vps
    await paddle.stop()
    await vps.stop()
    await hetzner.stop()
