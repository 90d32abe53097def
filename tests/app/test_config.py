"""Start-up with bad settings: one line per problem, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import load_settings
from tests.conftest import base_settings


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**clean, **env, "PYTHONPATH": str(Path(__file__).parents[2])},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def env_for(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    values = {k.upper(): v for k, v in base_settings(tmp_path).items()}
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def test_missing_setting_stops_run_with_one_line(tmp_path: Path) -> None:
    result = run_cli(["run"], env_for(tmp_path, ADMIN_API_KEY=None), tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "openclaw-hosted: ADMIN_API_KEY is missing: expected a random string of at least "
        "24 characters"
    ]
    assert "Traceback" not in result.stderr


def test_malformed_setting_is_named_without_its_value(tmp_path: Path) -> None:
    result = run_cli(
        ["run"], env_for(tmp_path, TELEGRAM_BOT_TOKEN="secret-looking-garbage"), tmp_path
    )
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is malformed" in result.stderr
    assert "secret-looking-garbage" not in result.stderr and "Traceback" not in result.stderr


def test_check_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    env = env_for(
        tmp_path,
        ADMIN_API_KEY="short",
        OPS_CHAT_ID="not-a-number",
        HCLOUD_TOKEN=None,
        BACKEND_IPS="300.1.2.3",
        HTTP_PORT="99999",
    )
    result = run_cli(["check-config"], env, tmp_path)
    assert result.returncode == 2
    for name in ("ADMIN_API_KEY", "OPS_CHAT_ID", "HCLOUD_TOKEN", "BACKEND_IPS", "HTTP_PORT"):
        assert name in result.stdout
    assert "5 problem(s) found" in result.stdout


def test_check_config_ok_and_dotenv_is_read(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    result = run_cli(["check-config", "--offline"], {}, tmp_path)
    assert result.returncode == 0, result.stdout
    assert "configuration OK" in result.stdout


def test_ssh_key_must_exist_and_be_private(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    base_settings(tmp_path)
    key.chmod(0o644)
    env_file = tmp_path / "settings.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_for(tmp_path).items()))
    settings, problems = load_settings(env_file)
    assert settings is not None and problems == [
        f"SSH_PRIVATE_KEY_PATH is malformed ({key} is readable by others): chmod 600 it"
    ]
    key.unlink()
    _, problems = load_settings(env_file)
    assert problems and "no file at" in problems[0]


def test_migrate_twice(tmp_path: Path) -> None:
    env = {"DATABASE_PATH": str(tmp_path / "m.db")}
    first = run_cli(["migrate"], env, tmp_path)
    second = run_cli(["migrate"], env, tmp_path)
    assert first.returncode == 0 and "applied migrations 1" in first.stdout
    assert second.returncode == 0 and "up to date" in second.stdout
