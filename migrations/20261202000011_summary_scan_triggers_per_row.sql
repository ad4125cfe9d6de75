-- The latest-scan summary (20261202000010) is refreshed only when a succeeded scan is
-- written, by row-level triggers with a WHEN condition, instead of statement-level ones.
--
-- Why: a statement-level trigger runs its function for every statement on sspm.scans,
-- even one that writes no row. The scheduler's claim (`leases::claim`) inserts and
-- updates scans in every poll of every region, nearly always zero rows, so each idle poll
-- paid two plpgsql calls (measured: the idle_100k claim p99 rose from ~0.5 ms to 3.5-4.5
-- ms). A row trigger's WHEN is evaluated without calling the function, so a claim (which
-- only writes 'running' and 'abandoned' rows) now costs nothing here, and a scan pays
-- one call when it finishes as succeeded. Deletes (prune) keep the statement-level
-- trigger: one call for thousands of rows is what they need.
DROP TRIGGER scans_latest_ins ON sspm.scans;
DROP TRIGGER scans_latest_upd ON sspm.scans;

-- The same lookup as instances_track_latest_scan(), for one instance: the latest
-- succeeded scan exactly as instance_posture picks it.
CREATE FUNCTION sspm.instances_track_succeeded_scan() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sspm.instances i
       SET last_succeeded_scan_id = ls.id, last_score = ls.score, last_coverage = ls.coverage
      FROM (SELECT 1) one
      LEFT JOIN LATERAL (
          SELECT s.id, s.score, s.coverage FROM sspm.scans s
          WHERE s.instance_id = NEW.instance_id AND s.status = 'succeeded'
          ORDER BY s.started_at DESC, s.id DESC
          LIMIT 1
      ) ls ON true
     WHERE i.id = NEW.instance_id
       AND (i.last_succeeded_scan_id, i.last_score, i.last_coverage)
           IS DISTINCT FROM (ls.id, ls.score, ls.coverage);
    RETURN NULL;
END
$$;

CREATE TRIGGER scans_latest_ins_row AFTER INSERT ON sspm.scans
    FOR EACH ROW WHEN (NEW.status = 'succeeded')
    EXECUTE FUNCTION sspm.instances_track_succeeded_scan();
-- Any update that makes, keeps or stops a row succeeded: a finish, a corrected score, or
-- (by hand) a status taken back.
CREATE TRIGGER scans_latest_upd_row AFTER UPDATE ON sspm.scans
    FOR EACH ROW WHEN (NEW.status = 'succeeded' OR OLD.status = 'succeeded')
    EXECUTE FUNCTION sspm.instances_track_succeeded_scan();
