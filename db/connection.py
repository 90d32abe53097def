"""The SQLite database: one writer connection behind a lock, one reader, WAL.

`synchronous=FULL` makes a commit durable (fsync'd) before it returns, which is
what lets the webhook answer 200 only for events that can no longer be lost.

`grouped()` is group commit for the webhook path: concurrent callers' transactions run
one after another as savepoints inside one BEGIN … COMMIT, and each caller's block
returns only once that shared COMMIT (one fsync for the whole group) has succeeded.
A block that raises rolls back only its own savepoint; a COMMIT that fails rolls the
whole group back and raises in every caller of the group. Inside a group the blocks'
statements run on the writer's connection from the event loop's thread (they are
short, and the group already holds SQLite's write lock, so none waits on a lock):
each statement saves two thread hops, which is what bounds a group's throughput. The
COMMIT, where the fsync happens, still runs on aiosqlite's thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Generator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiosqlite

from db.migrations import apply_migrations

BUSY_TIMEOUT_MS = 5000


async def _connect(path: Path) -> aiosqlite.Connection:
    # We issue BEGIN ourselves. Not only aiosqlite's thread uses the writer: see `grouped`.
    conn = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = aiosqlite.Row
    for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=FULL"):
        await _pragma(conn, pragma)
    return conn


async def _pragma(conn: aiosqlite.Connection, pragma: str) -> None:
    # Step the statement to its end: an open PRAGMA cursor keeps a lock on the file.
    async with conn.execute(f"PRAGMA {pragma}") as cursor:
        await cursor.fetchall()


def _create_private(path: Path) -> None:
    """Create the file with mode 0600 before SQLite does (its -wal/-shm copy the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class _InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _InlineResult:
    """Like aiosqlite's `execute()` result: awaited for the cursor, or `async with`."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = _InlineCursor(cursor)

    def __await__(self) -> Generator[Any, None, _InlineCursor]:
        return self._get().__await__()

    async def _get(self) -> _InlineCursor:
        return self._cursor

    async def __aenter__(self) -> _InlineCursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


class _InlineWriter:
    """The part of aiosqlite's Connection the write paths use, run on the calling thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _InlineResult:
        return _InlineResult(self._conn.execute(sql, tuple(parameters)))

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> _InlineResult:
        return _InlineResult(self._conn.executemany(sql, (tuple(p) for p in parameters)))

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, tuple(parameters)).fetchall()


class _Group:
    """One open group transaction: its members wait for `committed`."""

    def __init__(self) -> None:
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Database:
    """Writes go through `transaction()`, one at a time; reads use their own connection."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._group: _Group | None = None
        self._committer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, migrate: bool = True) -> Database:
        _create_private(path)
        writer = await _connect(path)
        await _pragma(writer, "journal_mode=WAL")
        db = cls(path, writer, await _connect(path))
        if migrate:
            await db.migrate()
        return db

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied (none when current)."""
        async with self._write_lock:
            await self._end_group()
            return await apply_migrations(self._writer)

    async def close(self) -> None:
        async with self._write_lock:
            await self._end_group()
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolled back on any exception."""
        async with self._write_lock:
            await self._end_group()
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                await self._writer.commit()
            except BaseException:
                # Also when COMMIT itself fails (disk full): never leave the writer mid-transaction.
                if self._writer.in_transaction:
                    await self._writer.rollback()
                raise

    @asynccontextmanager
    async def grouped(self) -> AsyncIterator[aiosqlite.Connection]:
        """Like `transaction()`, but committed together with concurrent `grouped()` callers.

        The block runs as a savepoint of the open group (one is begun when none is
        open); the caller resumes after the group's COMMIT, never before.
        """
        async with self._write_lock:
            group = self._group
            if group is None:
                await self._writer.execute("BEGIN IMMEDIATE")
                group = self._group = _Group()
                # Queued behind the callers already waiting for the lock: they join.
                self._committer = asyncio.create_task(self._commit_when_free(group))
            raw: sqlite3.Connection = self._writer._conn  # idle: we hold the write lock
            raw.execute("SAVEPOINT grouped")
            try:
                yield cast(aiosqlite.Connection, _InlineWriter(raw))
            except BaseException:
                raw.execute("ROLLBACK TO grouped")
                raw.execute("RELEASE grouped")
                raise
            raw.execute("RELEASE grouped")
        await asyncio.shield(group.committed)

    async def _commit_when_free(self, group: _Group) -> None:
        async with self._write_lock:
            if self._group is group:
                await self._end_group()

    async def _end_group(self) -> None:
        """COMMIT the open group (under the write lock) and tell its members."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            await self._writer.commit()
        except BaseException as exc:
            if self._writer.in_transaction:
                await self._writer.rollback()
            group.committed.set_exception(exc)
            group.committed.exception()  # retrieved: members re-raise it
            if not isinstance(exc, Exception):
                raise
        else:
            group.committed.set_result(None)

    # One read at a time on the reader: a statement still open for one coroutine would
    # hold the connection's read snapshot, and another coroutine's read would then miss
    # rows committed since (a provision that just returned, not yet visible).
    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._read_lock, self._reader.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._read_lock, self._reader.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def user_version(self) -> int:
        row = await self.fetch_one("PRAGMA user_version")
        return int(row[0]) if row else 0
