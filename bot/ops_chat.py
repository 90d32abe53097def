"""Where the operators' group is: `OPS_CHAT_ID` until Telegram migrates the group.

A group upgraded to a supergroup gets a new id (Telegram answers 400 with
`migrate_to_chat_id`); the new id is stored in `bot_state` and wins from then on,
also after a restart, since `OPS_CHAT_ID` in the environment still names the old one.
"""

from __future__ import annotations

from core.settings import Settings
from db.connection import Database

OPS_CHAT_KEY = "ops_chat_id"


async def ops_chat_id(db: Database, settings: Settings) -> int:
    """The ops chat's current id: the migrated one when stored, else `OPS_CHAT_ID`."""
    row = await db.fetch_one("SELECT value FROM bot_state WHERE key = ?", (OPS_CHAT_KEY,))
    return int(row["value"]) if row is not None else settings.ops_chat_id


async def set_ops_chat_id(db: Database, chat_id: int) -> None:
    """Remember the ops chat's new id (after a migration)."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO bot_state (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (OPS_CHAT_KEY, str(chat_id)),
        )
