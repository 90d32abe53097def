-- Resources: a reading that failed (unreachable, unparsable) is recorded, never alerted
-- (reachability is the health monitor's). `resources` and `resources_checked_at` keep the
-- last good figures; these say why and since when the latest reading failed (NULL after
-- a good one).
ALTER TABLE instances ADD COLUMN resources_error TEXT;
ALTER TABLE instances ADD COLUMN resources_error_at TEXT;
