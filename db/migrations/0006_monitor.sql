-- What the monitor observes and remembers between runs (DESIGN.md: deadlines and
-- incidents live in the database, so a restart forgets none of them).

-- Health: the start-grace anchor and the incident being tracked.
ALTER TABLE instances ADD COLUMN gateway_started_at TEXT;      -- last provision/restart/reboot/resume
ALTER TABLE instances ADD COLUMN failing_since TEXT;           -- first failed check of the current run
ALTER TABLE instances ADD COLUMN incident_alerted INTEGER NOT NULL DEFAULT 0; -- the open incident was told
ALTER TABLE instances ADD COLUMN last_recovered_at TEXT;       -- for telling a flap from a new incident
ALTER TABLE instances ADD COLUMN flap_alerted_at TEXT;
-- VPS status: Hetzner's view as last listed, and the anomaly last alerted (NULL: fine).
ALTER TABLE instances ADD COLUMN server_state TEXT;
ALTER TABLE instances ADD COLUMN server_state_alerted TEXT;
-- Resources: the figures of the last check (JSON) and their alerts.
ALTER TABLE instances ADD COLUMN resources TEXT;
ALTER TABLE instances ADD COLUMN resources_checked_at TEXT;
ALTER TABLE instances ADD COLUMN disk_alerted_at TEXT;
ALTER TABLE instances ADD COLUMN memory_alerted_at TEXT;
ALTER TABLE instances ADD COLUMN memory_restart_due_at TEXT;   -- a leak's restart, in the quiet window
-- Billing clock: the suspension deadline the customer has been warned of.
ALTER TABLE instances ADD COLUMN suspension_warned_for TEXT;

-- Servers that carry our labels but belong to no instance: alerted once, never deleted.
CREATE TABLE orphan_servers (
    server_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);

-- Hetzner's server-type prices, refreshed daily (gross monthly EUR per location).
CREATE TABLE server_prices (
    server_type TEXT NOT NULL,
    location TEXT NOT NULL,
    monthly_eur REAL NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (server_type, location)
);

-- Each scheduled job's last run, for GET /healthz and for jobs due by the day or week.
CREATE TABLE job_runs (
    job TEXT PRIMARY KEY,
    runs INTEGER NOT NULL DEFAULT 0,
    last_started_at TEXT,
    last_finished_at TEXT,
    last_ok_at TEXT,
    last_error TEXT
);
