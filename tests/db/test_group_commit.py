"""Group commit: concurrent webhook deliveries share one COMMIT, each answered after it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from db.connection import Database
from sim.paddle import envelope, paddle_id
from tests.conftest import Backend


def customer_event() -> bytes:
    customer = paddle_id("ctm")
    data = {"id": customer, "email": f"{customer[-8:].lower()}@example.com", "name": "C"}
    return json.dumps(envelope("customer.created", data)).encode()


async def test_concurrent_blocks_share_one_commit_and_resume_after_it(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "x.db")
    commits = 0
    original = db._writer.commit

    async def counted() -> None:
        nonlocal commits
        commits += 1
        await original()

    db._writer.commit = counted  # type: ignore[method-assign]

    async def write(i: int) -> int:
        async with db.grouped() as conn:
            await conn.execute("INSERT INTO job_runs (job) VALUES (?)", (f"j{i}",))
        # Resumed only after the COMMIT: a separate connection already sees the row.
        row = await db.fetch_one("SELECT count(*) FROM job_runs WHERE job = ?", (f"j{i}",))
        assert row is not None and row[0] == 1
        return i

    assert sorted(await asyncio.gather(*(write(i) for i in range(50)))) == list(range(50))
    assert commits < 10  # 50 blocks, a handful of commits
    row = await db.fetch_one("SELECT count(*) FROM job_runs")
    assert row is not None and row[0] == 50
    await db.close()


async def test_a_failing_block_rolls_back_only_itself(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "x.db")

    async def write(i: int) -> None:
        async with db.grouped() as conn:
            await conn.execute("INSERT INTO job_runs (job) VALUES (?)", (f"j{i}",))
            if i % 3 == 0:
                raise ValueError(i)

    results = await asyncio.gather(*(write(i) for i in range(12)), return_exceptions=True)
    assert [isinstance(r, ValueError) for r in results] == [i % 3 == 0 for i in range(12)]
    rows = await db.fetch_all("SELECT job FROM job_runs ORDER BY job")
    assert sorted(r["job"] for r in rows) == sorted(f"j{i}" for i in range(12) if i % 3)
    await db.close()


async def test_a_failed_commit_fails_its_whole_group_and_stores_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "x.db")
    original = db._writer.commit

    async def full_disk() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    db._writer.commit = full_disk  # type: ignore[method-assign]

    async def write(i: int) -> None:
        async with db.grouped() as conn:
            await conn.execute("INSERT INTO job_runs (job) VALUES (?)", (f"j{i}",))

    results = await asyncio.gather(*(write(i) for i in range(8)), return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    db._writer.commit = original  # type: ignore[method-assign]
    async with db.transaction() as conn:  # the writer is usable again, nothing left open
        await conn.execute("INSERT INTO job_runs (job) VALUES ('after')")
    rows = await db.fetch_all("SELECT job FROM job_runs")
    assert [r["job"] for r in rows] == ["after"]
    await db.close()


async def test_concurrent_deliveries_are_each_stored_and_applied_once(backend: Backend) -> None:
    bodies = [customer_event() for _ in range(40)]
    results = await asyncio.gather(*(backend.sender.post(b) for b in bodies + bodies[:10]))
    assert all(status == 200 for status, _ in results)
    applied = [a for _, a in results if a.get("outcome") == "applied"]
    assert len(applied) == 40  # the ten repeats are duplicates
    db = backend.context.db
    rows = await db.fetch_all("SELECT processed_at FROM paddle_events")
    assert len(rows) == 40 and all(r["processed_at"] for r in rows)
    customers = await db.fetch_one("SELECT count(*) FROM customers")
    assert customers is not None and customers[0] == 40


async def test_a_failed_group_answers_5xx_and_stores_nothing(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = backend.context.db
    original = db._writer.commit
    failing = True

    async def commit() -> Any:
        if failing:
            raise sqlite3.OperationalError("disk I/O error")
        return await original()

    monkeypatch.setattr(db._writer, "commit", commit)
    bodies = [customer_event() for _ in range(6)]
    results = await asyncio.gather(*(backend.sender.post(b) for b in bodies))
    assert all(status >= 500 for status, _ in results)
    assert await db.fetch_all("SELECT event_id FROM paddle_events") == []
    assert await db.fetch_all("SELECT id FROM customers") == []
    failing = False  # Paddle retries: now each is stored and applied once
    results = await asyncio.gather(*(backend.sender.post(b) for b in bodies))
    assert [a.get("outcome") for _, a in results] == ["applied"] * 6


async def test_an_event_failing_to_apply_is_still_stored_with_its_error(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    billing = backend.context.core.billing
    original = billing.apply

    async def broken(conn: Any, envelope: Any) -> str:
        await conn.execute("DELETE FROM paddle_events")  # half-done work, rolled back
        raise RuntimeError("boom")

    monkeypatch.setattr(billing, "apply", broken)
    body = customer_event()
    status, answer = await backend.sender.post(body)
    assert (status, answer.get("outcome")) == (200, "error")
    db = backend.context.db
    [row] = await db.fetch_all("SELECT processed_at, error FROM paddle_events")
    assert row["processed_at"] is None and "boom" in row["error"]
    monkeypatch.setattr(billing, "apply", original)
    assert await backend.context.core.inbox.apply_pending() == 1  # the next start-up
    [row] = await db.fetch_all("SELECT processed_at, error FROM paddle_events")
    assert row["processed_at"] is not None and row["error"] is None
