-- Issue 17: a scan's own rows no longer pay a foreign-key check per row on sspm.scans.
--
-- auto_explain over a throughput_steady pass (log_triggers) measured the RI triggers of
-- the rows a steady scan inserts: check_results_scan_id_fkey ~30 us per row (~35 rows, so
-- ~1.1 ms per scan: more than the rest of the findings write) and
-- activity_events_scan_id_fkey ~12 us per row (20 rows). Each is an index probe of
-- sspm.scans plus a FOR KEY SHARE lock, through SPI, per inserted row.
--
-- The insert-time check guards nothing the writer does not: the one writer of these rows
-- is the scan, which takes scan_id from its own scan row while it holds the instance's
-- lock; that row is 'running', which retention never deletes, and removing the instance
-- waits for the lock (the scan then stops with InstanceGone and rolls back).
--
-- What the constraints also did, their ON DELETE actions, moves into one statement-level
-- trigger on sspm.scans, which runs once per DELETE statement (retention's prune, an
-- instance's removal cascading to its scans, an operator's SQL) instead of once per row:
-- - check_results of a deleted scan are deleted (was ON DELETE CASCADE);
-- - activity_events.scan_id of a deleted scan is set to NULL (was ON DELETE SET NULL);
-- - findings.last_scan_id of a deleted scan is set to NULL: it lost its foreign key in
--   20261202000020, and retention cleared it itself; now every delete does.
-- Consumers see what they saw: a scan_id that names an existing scan, or NULL.
ALTER TABLE sspm.check_results DROP CONSTRAINT check_results_scan_id_fkey;
ALTER TABLE sspm.activity_events DROP CONSTRAINT activity_events_scan_id_fkey;

CREATE FUNCTION sspm.scans_clear_references() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The primary key (scan_id, check_id) finds them.
    DELETE FROM sspm.check_results c USING gone g WHERE c.scan_id = g.id;
    -- activity_events_scan_idx (partial, scan_id IS NOT NULL) finds them.
    UPDATE sspm.activity_events e SET scan_id = NULL FROM gone g WHERE e.scan_id = g.id;
    -- By instance first: findings has no index on last_scan_id.
    UPDATE sspm.findings f SET last_scan_id = NULL FROM gone g
     WHERE f.instance_id = g.instance_id AND f.last_scan_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER scans_clear_references AFTER DELETE ON sspm.scans
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.scans_clear_references();

-- Rows left dangling before this migration (none are expected: retention cleared
-- findings.last_scan_id in the same transaction as its deletes) are cleared once.
UPDATE sspm.findings f SET last_scan_id = NULL
 WHERE f.last_scan_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM sspm.scans s WHERE s.id = f.last_scan_id);
