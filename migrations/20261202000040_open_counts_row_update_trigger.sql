-- Issue 17: the open-finding counts on sspm.instances (20261202000010) follow updates of
-- sspm.findings through a row-level trigger whose WHEN names the changes that move a
-- count, instead of a statement-level one.
--
-- Why: a statement-level trigger with transition tables runs for every UPDATE statement
-- and copies every updated row, before and after, into its transition tables. A steady
-- scan's biggest write is the bump of its unchanged findings (last_seen_at, last_scan_id
-- of ~80 rows), which can never move a count, yet paid for both copies, the function call
-- and its two queries: ~5 % of Postgres's CPU in throughput_steady (perf, benches/README).
-- Transition tables cannot be combined with a column list or a WHEN, so the update side
-- becomes per row: the WHEN is evaluated without calling the function, the bump costs
-- nothing here, and a real change (opened, resolved, muted, severity changed) pays one
-- call. Inserts and deletes keep the statement-level triggers, which count many rows in
-- one call; for INSERT ... ON CONFLICT DO UPDATE the insert transition table holds only
-- the inserted rows and this trigger sees the updated ones, so nothing counts twice.
DROP TRIGGER findings_open_upd ON sspm.findings;

-- The count arithmetic in one place: adds (instance, severity, +1/-1) deltas to the
-- summary columns, writing only instances whose counts move. Both triggers call it.
CREATE FUNCTION sspm.instances_add_open_deltas(ids uuid[], sevs text[], ns int[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE sspm.instances i
       SET open_critical = i.open_critical + d.critical,
           open_high     = i.open_high + d.high,
           open_medium   = i.open_medium + d.medium,
           open_low      = i.open_low + d.low,
           open_info     = i.open_info + d.info,
           open_total    = i.open_total + d.total
      FROM (
          SELECT u.instance_id,
                 coalesce(sum(u.n) FILTER (WHERE u.severity = 'critical'), 0) AS critical,
                 coalesce(sum(u.n) FILTER (WHERE u.severity = 'high'), 0)     AS high,
                 coalesce(sum(u.n) FILTER (WHERE u.severity = 'medium'), 0)   AS medium,
                 coalesce(sum(u.n) FILTER (WHERE u.severity = 'low'), 0)      AS low,
                 coalesce(sum(u.n) FILTER (WHERE u.severity = 'info'), 0)     AS info,
                 sum(u.n)                                                     AS total
          FROM unnest(ids, sevs, ns) AS u (instance_id, severity, n)
          GROUP BY u.instance_id
      ) d
     WHERE i.id = d.instance_id
       AND (d.critical, d.high, d.medium, d.low, d.info, d.total) IS DISTINCT FROM (0, 0, 0, 0, 0, 0);
$$;

-- The statement-level function now serves INSERT, DELETE and TRUNCATE only.
CREATE OR REPLACE FUNCTION sspm.instances_track_open_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids  uuid[] := '{}';
    sevs text[] := '{}';
    ns   int[]  := '{}';
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE sspm.instances
           SET open_critical = 0, open_high = 0, open_medium = 0, open_low = 0, open_info = 0, open_total = 0
         WHERE open_total <> 0;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT coalesce(array_agg(instance_id), '{}'), coalesce(array_agg(severity), '{}'),
               coalesce(array_agg(1), '{}')
          INTO ids, sevs, ns
          FROM new_rows WHERE status = 'open';
    ELSE
        SELECT coalesce(array_agg(instance_id), '{}'), coalesce(array_agg(severity), '{}'),
               coalesce(array_agg(-1), '{}')
          INTO ids, sevs, ns
          FROM old_rows WHERE status = 'open';
    END IF;
    IF cardinality(ids) > 0 THEN
        PERFORM sspm.instances_add_open_deltas(ids, sevs, ns);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION sspm.instances_track_open_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sspm.instances_add_open_deltas(
        ARRAY[OLD.instance_id, NEW.instance_id],
        ARRAY[OLD.severity, NEW.severity],
        ARRAY[CASE WHEN OLD.status = 'open' THEN -1 ELSE 0 END,
              CASE WHEN NEW.status = 'open' THEN 1 ELSE 0 END]);
    RETURN NULL;
END
$$;

-- Exactly the updates that can move a count: a row that becomes or stops being open, or an
-- open row whose severity or instance changes.
CREATE TRIGGER findings_open_upd_row AFTER UPDATE ON sspm.findings
    FOR EACH ROW
    WHEN ((OLD.status = 'open') IS DISTINCT FROM (NEW.status = 'open')
          OR (NEW.status = 'open' AND (OLD.severity IS DISTINCT FROM NEW.severity
                                       OR OLD.instance_id IS DISTINCT FROM NEW.instance_id)))
    EXECUTE FUNCTION sspm.instances_track_open_change();
