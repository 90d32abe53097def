"""`image build`: a golden snapshot against the simulators, a server made from it that
skips `npm install`, the temporary server deleted also on failure, and the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from provisioner.image import ImageBuildError, build_golden_image
from sim.hetzner import ServerListener
from sim.hetzner_model import SimImage, SimServer
from sim.vps import Vps, VpsSim
from tests.conftest import base_settings
from tests.provisioner.conftest import World, needs_root

GOLDEN_LABELS = {
    "managed-by": "openclaw-hosted",
    "purpose": "golden-image",
    "openclaw-version": "2026-9-6",
}


class KeepMachines(ServerListener):
    """Holds on to each simulated machine, so its command log outlives its deletion
    (registered after the VPS simulator, which creates the machine first)."""

    def __init__(self, vps: VpsSim) -> None:
        self.vps = vps
        self.machines: list[Vps] = []

    def server_created(self, server: SimServer) -> None:
        self.machines.append(self.vps.vps(server.id))


class FailNpm(KeepMachines):
    def server_created(self, server: SimServer) -> None:
        super().server_created(server)
        self.vps.fail_command(server.id, r"npm install -g", times=1, exit_status=1)


def snapshots(world: World) -> list[SimImage]:
    return [i for i in world.hetzner_sim.state.images.values() if i.type == "snapshot"]


async def build(world: World, lines: list[str]) -> int:
    infra = world.infra
    return await build_golden_image(
        infra.hetzner, infra.ssh, infra.config, clock=infra.clock, log=lines.append
    )


@needs_root
async def test_golden_image_is_built_and_a_server_from_it_skips_npm_install(
    world: World,
) -> None:
    kept = KeepMachines(world.vps)
    world.hetzner_sim.add_listener(kept)
    lines: list[str] = []
    image_id = await build(world, lines)
    assert world.servers() == []  # the temporary server is gone
    [snapshot] = snapshots(world)
    assert snapshot.id == image_id and snapshot.status == "available"
    assert snapshot.labels == GOLDEN_LABELS
    assert "2026.9.6" in snapshot.description
    [builder] = kept.machines
    assert re.fullmatch(r"oc-image-[0-9a-z]{12}", builder.server.name)
    assert builder.server.labels == {"managed-by": "openclaw-hosted", "purpose": "golden-image"}
    assert builder.commands.matching(r"npm install -g")
    assert builder.commands.matching(r"systemctl disable --now openclaw-gateway")
    assert "temporary server deleted" in lines[-1]
    # The image keeps the installed software and the unit, but no gateway state (no
    # password, no onboarding) and does not start the gateway by itself.
    disk = Path(snapshot.payload["vps_disk"])
    assert not (disk / "home/openclaw/.openclaw").exists()
    systemd = disk / "upper/etc/systemd/system"
    assert (systemd / "openclaw-gateway.service").is_file()
    assert not (systemd / "multi-user.target.wants/openclaw-gateway.service").exists()
    assert [k for k in (disk / "upper/etc/ssh").glob("ssh_host_*") if k.is_file()] == []

    # A numeric HCLOUD_IMAGE (a string in the settings) is the image id.
    world.infra.config = dataclasses.replace(world.infra.config, image=str(image_id))
    instance_id = await world.provision()
    await world.reconciler.settle()
    instance = await world.instance(instance_id)
    assert (instance["status"], instance["last_error"]) == ("active", None)
    [server] = world.servers()
    assert server.image_id == image_id
    machine = world.vps.vps(server.id)
    assert machine.commands.matching(r"npm install -g") == []
    assert "openclaw 2026.9.6 already installed" in instance["provision_log"]
    assert machine.commands.matching(r"openclaw onboard")  # its own onboarding, password
    # Its own host key (pinned from its user data), not the builder's.
    assert builder.host_key is not None
    builder_key = builder.host_key.export_public_key("openssh").decode().split()[1]
    assert builder_key not in instance["ssh_host_key"]


@needs_root
async def test_a_failing_install_still_deletes_the_temporary_server(world: World) -> None:
    failing = FailNpm(world.vps)
    world.hetzner_sim.add_listener(failing)
    lines: list[str] = []
    with pytest.raises(ImageBuildError, match="install script exited 1"):
        await build(world, lines)
    assert world.servers() == [] and snapshots(world) == []
    assert len(failing.machines) == 1
    assert "temporary server deleted" in lines[-1]


@needs_root
async def test_cli_builds_the_image_and_prints_hcloud_image(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # The world's key (same tmp_path), the simulated Hetzner, the world's SSH port.
    env = base_settings(tmp_path) | {
        "hcloud_endpoint": world.hetzner_sim.url,
        "hcloud_token": "world-token",
        "ssh_port": "2222",
        "hcloud_locations": "fsn1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key.upper(), value)
    # The CLI runs its own event loop; the simulators keep serving on this one.
    code = await asyncio.to_thread(main, ["--env-file", str(tmp_path / "none.env"), "image",
                                          "build"])  # fmt: skip
    out, err = capfd.readouterr()
    assert code == 0, err
    [snapshot] = snapshots(world)
    assert out.splitlines() == [f"HCLOUD_IMAGE={snapshot.id}"]
    assert "image build: temporary server deleted" in err
    assert "world-token" not in out + err and "Traceback" not in err
    assert world.servers() == []


def test_cli_image_build_stops_on_a_missing_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env: dict[str, Any] = base_settings(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key.upper(), value)
    monkeypatch.delenv("HCLOUD_TOKEN")
    code = main(["--env-file", str(tmp_path / "none.env"), "image", "build"])
    assert code == 2
    err = capsys.readouterr().err
    assert [line.split(" is ")[0] for line in err.strip().splitlines()] == [
        "openclaw-hosted: HCLOUD_TOKEN"
    ]
    assert "Traceback" not in err
