"""Read queries for instances, joined with their customer's contact."""

from __future__ import annotations

import aiosqlite

from db.connection import Database

_SELECT = (
    "SELECT i.*, c.email AS customer_email, c.name AS customer_name FROM instances i "
    "JOIN customers c ON c.id = i.customer_id"
)


async def get_instance(db: Database, instance_id: str) -> aiosqlite.Row | None:
    return await db.fetch_one(f"{_SELECT} WHERE i.id = ?", (instance_id,))


async def list_instances(
    db: Database, *, status: str | None, page: int, per_page: int
) -> tuple[list[aiosqlite.Row], int]:
    """One page, newest first, and the total count for `meta`."""
    where, params = ("WHERE i.status = ?", [status]) if status else ("", [])
    total_row = await db.fetch_one(f"SELECT COUNT(*) FROM instances i {where}", params)  # noqa: S608
    total = int(total_row[0]) if total_row else 0
    # The page's ids from the index alone, then their rows: a deep OFFSET skips index
    # entries, not joined rows.
    rows = await db.fetch_all(
        f"{_SELECT} WHERE i.id IN (SELECT i.id FROM instances i {where} "  # noqa: S608
        "ORDER BY i.created_at DESC, i.id LIMIT ? OFFSET ?) ORDER BY i.created_at DESC, i.id",
        [*params, per_page, (page - 1) * per_page],
    )
    return rows, total


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.fetch_all("SELECT status, COUNT(*) AS n FROM instances GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
