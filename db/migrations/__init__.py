"""Numbered SQL migrations (`NNNN_name.sql`), tracked in `PRAGMA user_version`.

Each file runs in one transaction together with the version bump, so a crash
mid-migration leaves the previous version intact and a re-run is always safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

MIGRATIONS_DIR = Path(__file__).parent
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path


def available() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file name not NNNN_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), path))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


async def current_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def apply_migrations(conn: aiosqlite.Connection) -> list[int]:
    """Apply every migration newer than the database; return the versions applied."""
    applied = []
    version = await current_version(conn)
    for migration in available():
        if migration.version <= version:
            continue
        statements = migration.path.read_text()
        # executescript would COMMIT first; run the script inside our own transaction.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_statements(statements):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version={migration.version}")
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
        applied.append(migration.version)
    return applied


def _split_statements(script: str) -> list[str]:
    """Split on `;` at line ends, ignoring `--` comments (our migrations hold no triggers)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    text = "\n".join(lines)
    return [s.strip() for s in text.split(";") if s.strip()]
