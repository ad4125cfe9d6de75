-- sspm.activity_events partitioned by month of created_at (issue 17), so that retention
-- drops whole months instead of deleting millions of rows, and a scan's reads of the
-- event window touch only recent partitions. Documented in docs/DATABASE.md.
--
-- What changes for consumers: nothing they select. The table keeps its name, columns and
-- the reader's SELECT grant; partitions are an implementation detail (readers are not
-- granted them: query sspm.activity_events). Two behaviours move:
-- - the primary key includes created_at (a partitioned table's unique keys must contain
--   the partition key); the scanner still stores each Intercom event id once per
--   instance (its INSERT skips ids already stored, see src/db/activity.rs);
-- - retention drops a month once all of it is older than the cutoff, so an event is kept
--   at least the retention period and at most one month longer.
--
-- Months are created ahead by the daemon's housekeeping (the current month and the next
-- two, at start-up and with the daily retention run). Events outside every month (far
-- past or future timestamps in hostile data, or a daemon that has not run for months)
-- land in the DEFAULT partition; retention deletes old rows from it, and creating a month
-- moves that month's rows out of it first.
--
-- Existing rows are copied (one INSERT ... SELECT; a large table takes a while, once).

ALTER TABLE sspm.activity_events RENAME TO activity_events_unpartitioned;
ALTER INDEX sspm.activity_events_pkey RENAME TO activity_events_unpartitioned_pkey;
ALTER INDEX sspm.activity_events_time_idx RENAME TO activity_events_unpartitioned_time_idx;
ALTER INDEX sspm.activity_events_type_idx RENAME TO activity_events_unpartitioned_type_idx;
ALTER TABLE sspm.activity_events_unpartitioned
    RENAME CONSTRAINT activity_events_instance_id_fkey TO activity_events_unpartitioned_instance_id_fkey;
ALTER TABLE sspm.activity_events_unpartitioned
    RENAME CONSTRAINT activity_events_scan_id_fkey TO activity_events_unpartitioned_scan_id_fkey;

CREATE TABLE sspm.activity_events (
    instance_id        uuid NOT NULL REFERENCES sspm.instances (id) ON DELETE CASCADE,
    event_id           text NOT NULL,
    activity_type      text NOT NULL,
    performed_by_id    text,
    performed_by_email text,
    ip                 text,
    created_at         timestamptz NOT NULL,
    description        text,
    metadata           jsonb,
    ingested_at        timestamptz NOT NULL DEFAULT now(),
    scan_id            uuid REFERENCES sspm.scans (id) ON DELETE SET NULL,
    PRIMARY KEY (instance_id, event_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX activity_events_time_idx ON sspm.activity_events (instance_id, created_at);
CREATE INDEX activity_events_type_idx ON sspm.activity_events (instance_id, activity_type, created_at);
-- Pruning a scan sets its events' scan_id to NULL: without this index every pruned scan
-- would scan the whole table.
CREATE INDEX activity_events_scan_idx ON sspm.activity_events (scan_id) WHERE scan_id IS NOT NULL;

CREATE TABLE sspm.activity_events_default PARTITION OF sspm.activity_events DEFAULT;

-- The month (UTC) containing `at`, as a partition named activity_events_yYYYYmMM; rows of
-- that month already in the DEFAULT partition move into it. Returns whether it was created.
CREATE FUNCTION sspm.activity_events_create_month(at timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'activity_events_' || to_char(at AT TIME ZONE 'UTC', '"y"YYYY"m"MM');
BEGIN
    IF to_regclass('sspm.' || name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE sspm.%I (LIKE sspm.activity_events INCLUDING DEFAULTS)', name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM sspm.activity_events_default
                        WHERE created_at >= $1 AND created_at < $2 RETURNING *)
         INSERT INTO sspm.%I SELECT * FROM moved', name)
        USING lo, hi;
    EXECUTE format(
        'ALTER TABLE sspm.activity_events ATTACH PARTITION sspm.%I FOR VALUES FROM (%L) TO (%L)',
        name, lo, hi);
    RETURN true;
EXCEPTION
    -- Another replica created the same month at the same moment: it exists, as wanted.
    WHEN duplicate_table OR unique_violation THEN
        RETURN false;
END
$$;

-- Drops every month partition whose whole range is older than `cutoff`; returns each
-- dropped partition with its row count.
CREATE FUNCTION sspm.activity_events_drop_months_before(cutoff timestamptz)
RETURNS TABLE (partition_name text, row_count bigint)
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'sspm.activity_events'::regclass
          AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
        ORDER BY 2
    LOOP
        CONTINUE WHEN part.upper_bound IS NULL OR part.upper_bound > cutoff;
        partition_name := part.relname;
        EXECUTE format('SELECT count(*) FROM sspm.%I', part.relname) INTO row_count;
        EXECUTE format('DROP TABLE sspm.%I', part.relname);
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION sspm.activity_events_create_month(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION sspm.activity_events_drop_months_before(timestamptz) FROM PUBLIC;

-- Months for the existing rows (at most the last 13), the backfill window and two ahead.
DO $$
DECLARE
    oldest timestamptz;
    first_month timestamptz;
    m timestamptz;
BEGIN
    SELECT min(created_at) INTO oldest FROM sspm.activity_events_unpartitioned;
    -- (least/greatest skip NULLs: an empty table must not get 13 months.)
    first_month := CASE
        WHEN oldest IS NULL THEN now() - interval '4 months'
        ELSE least(greatest(oldest, now() - interval '13 months'), now() - interval '4 months')
    END;
    m := date_trunc('month', first_month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    WHILE m < now() + interval '3 months' LOOP
        PERFORM sspm.activity_events_create_month(m);
        m := m + interval '1 month';
    END LOOP;
END
$$;

INSERT INTO sspm.activity_events
    (instance_id, event_id, activity_type, performed_by_id, performed_by_email, ip,
     created_at, description, metadata, ingested_at, scan_id)
SELECT instance_id, event_id, activity_type, performed_by_id, performed_by_email, ip,
       created_at, description, metadata, ingested_at, scan_id
FROM sspm.activity_events_unpartitioned;

DROP TABLE sspm.activity_events_unpartitioned;

GRANT SELECT ON sspm.activity_events TO sspm_reader;
