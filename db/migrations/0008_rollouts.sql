-- Fleet upgrades (core/rollouts.py, provisioner/rollout.py): a rollout of one OpenClaw
-- version, canary first, then batches, recorded here so it resumes after a restart.

-- The OpenClaw version an instance runs, as the install, an upgrade or the resource
-- check last found it (NULL: not known yet).
ALTER TABLE instances ADD COLUMN openclaw_version TEXT;
-- For `upgrade` operations: the version to install (NULL: the fleet's target).
ALTER TABLE operations ADD COLUMN version TEXT;

CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    previous_version TEXT NOT NULL,               -- the fleet's target when it was asked for
    state TEXT NOT NULL,                          -- proposed|running|paused|halted|aborted|done|canceled
    phase TEXT NOT NULL DEFAULT 'canary',         -- canary|soak|batches
    canary_size INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,                  -- also the concurrency limit
    max_failures INTEGER NOT NULL,                -- failed instances that halt it
    failures_forgiven INTEGER NOT NULL DEFAULT 0, -- failures before the last resume
    soak_s REAL NOT NULL,
    respect_quiet_window INTEGER NOT NULL DEFAULT 1,
    soak_until TEXT,
    canary_passed_at TEXT,                        -- from then on new servers get `version`
    halt_reason TEXT,
    waiting_for TEXT,                             -- what it waits for, for /rollout
    requested_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX rollouts_state ON rollouts(state);

-- Each instance a rollout took up: canary (batch 0) or batch 1, 2, ...
CREATE TABLE rollout_instances (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    instance_id TEXT NOT NULL REFERENCES instances(id),
    batch INTEGER NOT NULL,
    state TEXT NOT NULL,                          -- upgrading|upgraded|rolling_back|rolled_back|failed|skipped
    from_version TEXT,
    operation_id INTEGER REFERENCES operations(id),
    detail TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (rollout_id, instance_id)
);
