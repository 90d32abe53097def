"""`openclaw-hosted sim` and `demo` start, show, and stop cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import load_settings

ROOT = Path(__file__).parents[2]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sim_prints_urls_and_a_ready_env(tmp_path: Path) -> None:
    env_file = tmp_path / "sim.env"
    result = run_cli(
        ["sim", "--once", "--data-dir", str(tmp_path / "world"), "--env-out", str(env_file)],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for name in ("Paddle API", "Hetzner Cloud API", "Telegram Bot API"):
        assert name in result.stdout
    assert "0.0.0.0" not in result.stdout  # noqa: S104 - loopback only
    settings, problems = load_settings(env_file)  # the printed settings pass check-config
    assert problems == [] and settings is not None
    assert settings.hcloud_endpoint.startswith("http://127.")
    assert (env_file.stat().st_mode & 0o777) == 0o600


def test_demo_takes_a_payment_to_an_instance(tmp_path: Path) -> None:
    result = run_cli(["demo", "--once", "--data-dir", str(tmp_path / "world")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "subscription.created for grace@example.com: HTTP 200" in result.stdout
    assert '"customer_email": "grace@example.com"' in result.stdout
    assert '"desired_state": "active"' in result.stdout
