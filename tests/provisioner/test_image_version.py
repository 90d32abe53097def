"""`image build --version V`: the golden image rebuilt for a fleet rollout's version."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from tests.conftest import base_settings
from tests.provisioner.conftest import World, needs_root
from tests.provisioner.test_image import KeepMachines, snapshots


def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    env: dict[str, Any] = base_settings(tmp_path) | extra
    for key, value in env.items():
        monkeypatch.setenv(key.upper(), value)


def test_a_version_that_is_none_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_env(tmp_path, monkeypatch)
    code = main(["--env-file", str(tmp_path / "none.env"), "image", "build", "--version", "x;y"])
    assert code == 2
    assert "not an OpenClaw version: 'x;y'" in capsys.readouterr().err


@needs_root
async def test_the_image_is_built_with_the_version_asked_for(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    settings_env(
        tmp_path, monkeypatch, hcloud_endpoint=world.hetzner_sim.url, hcloud_token="world-token",
        ssh_port="2222", hcloud_locations="fsn1",
    )  # fmt: skip
    kept = KeepMachines(world.vps)
    world.hetzner_sim.add_listener(kept)
    argv = ["--env-file", str(tmp_path / "none.env"), "image", "build", "--version", "2026.10.1"]
    code = await asyncio.to_thread(main, argv)  # the CLI runs its own event loop
    assert code == 0, capfd.readouterr().err
    [snapshot] = snapshots(world)
    assert snapshot.labels["openclaw-version"] == "2026-10-1"
    [builder] = kept.machines
    assert builder.commands.matching(r"npm install -g --allow-scripts=openclaw openclaw@2026.10.1")
