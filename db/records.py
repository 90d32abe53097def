"""Small, explicit SQL helpers shared by the query modules.

Table and column names come only from our own code (never from input), so
building the column list is safe; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosqlite

TABLES = frozenset(
    {
        "customers",
        "subscriptions",
        "purchases",
        "instances",
        "operations",
        "events",
        "paddle_events",
        "notifications",
        "login_tokens",
    }
)


def _check(table: str, columns: Mapping[str, Any]) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table}")
    for column in columns:
        if not column.isidentifier():
            raise ValueError(f"bad column name {column!r}")


async def insert(conn: aiosqlite.Connection, table: str, values: Mapping[str, Any]) -> int:
    """INSERT a row; returns its rowid."""
    _check(table, values)
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cursor = await conn.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608
        tuple(values.values()),
    )
    return int(cursor.lastrowid or 0)


async def update(
    conn: aiosqlite.Connection, table: str, key: str, key_value: Any, values: Mapping[str, Any]
) -> int:
    """UPDATE one row by key; returns the number of rows changed."""
    _check(table, {**values, key: None})
    assignments = ", ".join(f"{column} = ?" for column in values)
    cursor = await conn.execute(
        f"UPDATE {table} SET {assignments} WHERE {key} = ?",  # noqa: S608
        (*values.values(), key_value),
    )
    return cursor.rowcount


async def fetch_one(
    conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> aiosqlite.Row | None:
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> list[aiosqlite.Row]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())
