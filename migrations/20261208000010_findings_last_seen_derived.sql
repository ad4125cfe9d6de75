-- Issue 17: a steady scan rewrote every open finding only to move `last_seen_at` and
-- `last_scan_id` (~80 HOT updates of ~780-byte rows per scan, each dirtying its page,
-- which after a checkpoint costs a full-page image in the WAL). For an open or muted
-- finding that the instance's last succeeded scan found again, those two columns are that
-- scan's time and id, so they are now derived from the instance row instead of stored on
-- every finding at every scan.
--
-- Readers see no change: `sspm.findings` becomes a view with the same columns, in the
-- same order, meaning what docs/DATABASE.md says. The rows live in `sspm.finding_rows`
-- (the table renamed: its indexes, constraints, triggers, grants to the daemon and
-- foreign keys move with it). A finding row whose flag `last_seen_follows_instance` is
-- set takes both columns from `sspm.instances.findings_seen_at` / `findings_seen_scan_id`
-- (the last succeeded scan's time and id, written with the scan's instance update); an
-- unset flag means the stored columns hold the values. The scanner keeps the invariant
-- (src/db/findings.rs): a succeeded scan sets the flag on every finding it writes or
-- finds again, and clears it, storing the instance's previous values, on every flagged
-- finding it does not find again (resolved, unmuted, or its check not evaluated) before
-- the instance's columns move; a failed scan writes what it writes with the flag unset
-- and leaves the instance's columns alone.
--
-- Existing rows start unset (their stored values are right); a succeeded scan's first
-- finding-again of each sets it, once.

ALTER TABLE sspm.findings RENAME TO finding_rows;
ALTER TABLE sspm.finding_rows
    ADD COLUMN last_seen_follows_instance boolean NOT NULL DEFAULT false;

ALTER TABLE sspm.instances
    ADD COLUMN findings_seen_at timestamptz,
    ADD COLUMN findings_seen_scan_id uuid;

-- A scalar subquery rather than a join: the view stays automatically updatable (its
-- other columns can be updated and inserted through it, as through the table before), and
-- the instance row is probed only for flagged rows whose derived columns are read.
CREATE VIEW sspm.findings AS
SELECT f.id, f.instance_id, f.check_id, f.resource, f.status, f.severity, f.title,
       f.evidence, f.remediation, f.compliance, f.first_seen_at,
       CASE WHEN f.last_seen_follows_instance
            THEN COALESCE((SELECT i.findings_seen_at FROM sspm.instances i
                           WHERE i.id = f.instance_id), f.last_seen_at)
            ELSE f.last_seen_at END AS last_seen_at,
       f.resolved_at, f.first_scan_id,
       CASE WHEN f.last_seen_follows_instance
            THEN (SELECT i.findings_seen_scan_id FROM sspm.instances i
                  WHERE i.id = f.instance_id)
            ELSE f.last_scan_id END AS last_scan_id,
       f.reopen_count, f.exception_id, f.content_digest
FROM sspm.finding_rows f;

-- Readers read the view; the table's flag and stored columns are the scanner's.
REVOKE ALL ON sspm.finding_rows FROM sspm_reader;
GRANT SELECT ON sspm.findings TO sspm_reader;

-- open_findings followed the table through the rename: point it at the view, so its
-- last_seen_at / last_scan_id are the derived ones.
CREATE OR REPLACE VIEW sspm.open_findings AS
SELECT f.id AS finding_id,
       f.instance_id,
       i.name AS instance_name,
       i.region,
       f.check_id,
       f.severity,
       CASE f.severity
           WHEN 'critical' THEN 1
           WHEN 'high' THEN 2
           WHEN 'medium' THEN 3
           WHEN 'low' THEN 4
           ELSE 5
       END AS severity_rank,
       f.title,
       f.resource,
       f.evidence,
       f.remediation,
       f.compliance,
       f.first_seen_at,
       f.last_seen_at,
       f.reopen_count,
       f.last_scan_id
FROM sspm.findings f
JOIN sspm.instances i ON i.id = f.instance_id
WHERE f.status = 'open';

-- A deleted scan is cleared where the instance names it too, as it was on every finding
-- that named it (those flagged now read it from the instance).
CREATE OR REPLACE FUNCTION sspm.scans_clear_references()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    -- The primary key (scan_id, check_id) finds them.
    DELETE FROM sspm.check_results c USING gone g WHERE c.scan_id = g.id;
    -- activity_events_scan_idx (partial, scan_id IS NOT NULL) finds them.
    UPDATE sspm.activity_events e SET scan_id = NULL FROM gone g WHERE e.scan_id = g.id;
    -- By instance first: finding_rows has no index on last_scan_id.
    UPDATE sspm.finding_rows f SET last_scan_id = NULL FROM gone g
     WHERE f.instance_id = g.instance_id AND f.last_scan_id = g.id;
    UPDATE sspm.instances i SET findings_seen_scan_id = NULL FROM gone g
     WHERE i.id = g.instance_id AND i.findings_seen_scan_id = g.id;
    RETURN NULL;
END
$function$;
