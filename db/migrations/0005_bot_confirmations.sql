-- The confirmations an admin has been asked for in the ops group (suspend, reprovision,
-- retry, destroy), so a confirm button still works after a restart and works only once.
CREATE TABLE bot_confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,                         -- suspend|reprovision|retry|destroy
    instance_id TEXT NOT NULL REFERENCES instances(id),
    reason TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 1,              -- destroy asks twice
    requested_by TEXT NOT NULL,                   -- tg:<user id>
    created_at TEXT NOT NULL
);
