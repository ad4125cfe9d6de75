-- Issue 17: two per-scan costs that guard nothing the writers do not.
--
-- 1. sspm.activity_events.instance_id loses its foreign key; its ON DELETE CASCADE
--    becomes one statement-level trigger on sspm.instances.
--
--    Why: a steady scan inserts ~20 events, and the key checked each one (an index probe
--    of sspm.instances plus a FOR KEY SHARE lock of the instance row, through SPI):
--    auto_explain measured ~6.4 us per row under throughput_steady's load. The one writer
--    of these rows is the scan, which holds the instance row's lock (FOR UPDATE) for its
--    whole transaction, so the instance cannot go away under it; removing the instance
--    waits for that lock, and the scan then ends as InstanceGone and rolls back.
--    Removing an instance still removes its events (the trigger), in the same statement
--    as before, so a reader never sees events of an instance that does not exist.
--
-- 2. sspm.scans drops scans_running_idx and keeps room on its pages (fillfactor 80), so
--    that finishing a scan (status, finished_at and the totals) is a heap-only (HOT)
--    update.
--
--    Why: the partial index's predicate (status = 'running') made every finish a non-HOT
--    update: a new index entry in each of the table's indexes (pg_stat_user_tables after a
--    throughput_steady run: 4,000 scan updates, 0 HOT). No statement used the index: the
--    scheduler finds a running scan through the instance's lease_scan_id and reads it by
--    primary key. Rows are inserted when a scan starts and updated when it ends, minutes at
--    most later, so the 20 % kept free on each page takes the updated row.

ALTER TABLE sspm.activity_events DROP CONSTRAINT activity_events_instance_id_fkey;

CREATE FUNCTION sspm.instances_remove_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- activity_events_time_idx (instance_id, created_at) finds them in each month.
    DELETE FROM sspm.activity_events e USING gone g WHERE e.instance_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER instances_remove_activity AFTER DELETE ON sspm.instances
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_remove_activity();

DROP INDEX sspm.scans_running_idx;
ALTER TABLE sspm.scans SET (fillfactor = 80);
