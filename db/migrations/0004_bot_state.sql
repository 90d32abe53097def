-- Small pieces of state the bot keeps across restarts (the migrated ops chat id, …).
CREATE TABLE bot_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
