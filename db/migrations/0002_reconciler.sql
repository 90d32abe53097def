-- What the reconciler needs to resume mid-step after a crash.
ALTER TABLE instances ADD COLUMN reinstalls INTEGER NOT NULL DEFAULT 0;   -- verify failed after install
ALTER TABLE instances ADD COLUMN pending_action_id INTEGER;               -- Hetzner action of the step in flight
ALTER TABLE instances ADD COLUMN snapshot_image_id INTEGER;              -- latest snapshot taken of it
ALTER TABLE instances ADD COLUMN verified_at TEXT;                       -- last successful verification
ALTER TABLE operations ADD COLUMN started_at TEXT;
ALTER TABLE operations ADD COLUMN finished_at TEXT;
