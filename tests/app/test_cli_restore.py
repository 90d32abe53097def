"""`openclaw-hosted restore FILE` as a real process: one line and exit 2 when refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from app.service import acquire_lock
from db.connection import Database
from monitor.db_backup import backup_database

ROOT = Path(__file__).parents[2]


def restore(tmp_path: Path, database: Path, backup: Path) -> subprocess.CompletedProcess[str]:
    # Only DATABASE_PATH from the environment, as an operator would set it; cwd has no .env.
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME")}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_PATH": str(database)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "restore", str(backup)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_backup(tmp_path: Path) -> tuple[Path, Path]:
    """A database whose customer `cust_old` exists only in the backup."""
    database = tmp_path / "data" / "openclaw-hosted.db"

    async def build() -> Path:
        db = await Database.open(database)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO customers (id, created_at, updated_at) VALUES (?, ?, ?)",
                    ("cust_old", "2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z"),
                )
            now = datetime(2026, 11, 25, 3, 15, tzinfo=UTC)
            result = await backup_database(database, tmp_path / "backups", now)
            async with db.transaction() as conn:
                await conn.execute("DELETE FROM customers")
            return result.path
        finally:
            await db.close()

    return database, asyncio.run(build())


def customers(database: Path) -> list[str]:
    with closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM customers")]


def test_restore_puts_the_backup_in_place(tmp_path: Path) -> None:
    database, backup = make_backup(tmp_path)
    assert customers(database) == []
    done = restore(tmp_path, database, backup)
    assert done.returncode == 0, done.stderr
    assert f"restored {backup} to {database}" in done.stdout
    assert "before-restore-" in done.stdout
    assert customers(database) == ["cust_old"]
    assert database.stat().st_mode & 0o777 == 0o600


def test_restore_refusals_are_one_line_and_exit_2(tmp_path: Path) -> None:
    database, backup = make_backup(tmp_path)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
    lock = acquire_lock(database)
    try:
        running = restore(tmp_path, database, backup)
    finally:
        lock.close()
    for done, reason in (
        (restore(tmp_path, database, tmp_path / "missing.db"), "no backup file"),
        (restore(tmp_path, database, corrupt), "corrupt.db"),
        (running, "is running"),
    ):
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("openclaw-hosted: restore refused: ")
        assert reason in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stdout == ""
    assert customers(database) == []  # nothing was changed by a refusal
