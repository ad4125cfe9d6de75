-- Per-instance summary on sspm.instances for the console's fleet page (issue 13): the
-- latest succeeded scan's id, score and coverage, and the open findings per severity.
-- Without them, sorting the fleet by score probes every instance's scans and filtering it
-- by severity probes every instance's findings, on every request.
--
-- Both are kept by triggers, in the writer's own transaction, rather than by the scanner
-- alone: finding statuses change outside a scan too (an exception added or removed, its
-- expiry in housekeeping, a data migration such as 20261201000030, an operator's SQL), and
-- a summary that any of them forgot would make the page lie. The values are therefore
-- always those `sspm.instance_posture` computes from the rows (tests compare the two).
--
-- Open counts are kept as deltas (`open_high = open_high + d`), not recounted: under READ
-- COMMITTED two transactions changing one instance's findings each recount from their own
-- snapshot and the second would overwrite the first's change, while an increment is
-- applied to the latest row version. The latest scan is looked up again instead (one
-- index probe): scans of one instance finish one at a time under the instance's row lock
-- (`leases::lock_for_write`), so the lookup cannot miss a concurrent one.

ALTER TABLE sspm.instances
    ADD COLUMN last_succeeded_scan_id uuid,
    ADD COLUMN last_score             double precision,
    ADD COLUMN last_coverage          double precision,
    ADD COLUMN open_critical          bigint NOT NULL DEFAULT 0,
    ADD COLUMN open_high              bigint NOT NULL DEFAULT 0,
    ADD COLUMN open_medium            bigint NOT NULL DEFAULT 0,
    ADD COLUMN open_low               bigint NOT NULL DEFAULT 0,
    ADD COLUMN open_info              bigint NOT NULL DEFAULT 0,
    ADD COLUMN open_total             bigint NOT NULL DEFAULT 0;

-- The latest succeeded scan of each instance whose scans the statement changed, exactly as
-- instance_posture picks it. A DELETE only matters when it removed the stored scan (prune
-- keeps every instance's latest succeeded scan, so normally it touches no instance; an
-- instance's own removal cascades to rows that are gone already).
CREATE FUNCTION sspm.instances_track_latest_scan() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE sspm.instances i
           SET last_succeeded_scan_id = ls.id, last_score = ls.score, last_coverage = ls.coverage
          FROM (
              -- The stored scan's instances only, found before any lookup: a prune
              -- deletes thousands of older scans and must not probe once for each.
              SELECT DISTINCT o.instance_id FROM old_rows o
              JOIN sspm.instances held ON held.id = o.instance_id AND held.last_succeeded_scan_id = o.id
          ) o
          LEFT JOIN LATERAL (
              SELECT s.id, s.score, s.coverage FROM sspm.scans s
              WHERE s.instance_id = o.instance_id AND s.status = 'succeeded'
              ORDER BY s.started_at DESC, s.id DESC
              LIMIT 1
          ) ls ON true
         WHERE i.id = o.instance_id;
    ELSE
        UPDATE sspm.instances i
           SET last_succeeded_scan_id = ls.id, last_score = ls.score, last_coverage = ls.coverage
          FROM (SELECT DISTINCT instance_id FROM new_rows WHERE status = 'succeeded') c
          LEFT JOIN LATERAL (
              SELECT s.id, s.score, s.coverage FROM sspm.scans s
              WHERE s.instance_id = c.instance_id AND s.status = 'succeeded'
              ORDER BY s.started_at DESC, s.id DESC
              LIMIT 1
          ) ls ON true
         WHERE i.id = c.instance_id
           AND (i.last_succeeded_scan_id, i.last_score, i.last_coverage)
               IS DISTINCT FROM (ls.id, ls.score, ls.coverage);
    END IF;
    RETURN NULL;
END
$$;

-- A statement-level trigger with transition tables runs once per statement (a scan's
-- upsert of all its findings is one UPDATE of the instance row, not one per finding).
-- PostgreSQL allows transition tables only on single-event triggers, hence one each.
CREATE TRIGGER scans_latest_ins AFTER INSERT ON sspm.scans
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_latest_scan();
CREATE TRIGGER scans_latest_upd AFTER UPDATE ON sspm.scans
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_latest_scan();
CREATE TRIGGER scans_latest_del AFTER DELETE ON sspm.scans
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_latest_scan();

-- Adds the statement's change of open findings per instance and severity: +1 for each
-- row open after it, -1 for each row open before it (an upsert that leaves a finding open
-- nets 0 and writes nothing).
CREATE FUNCTION sspm.instances_track_open_counts() RETURNS trigger
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
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(x.instance_id), '{}'), coalesce(array_agg(x.severity), '{}'),
               coalesce(array_agg(x.n), '{}')
          INTO ids, sevs, ns
          FROM (SELECT instance_id, severity, 1 AS n FROM new_rows WHERE status = 'open'
                UNION ALL
                SELECT instance_id, severity, -1 FROM old_rows WHERE status = 'open') x;
    ELSE
        SELECT coalesce(array_agg(instance_id), '{}'), coalesce(array_agg(severity), '{}'),
               coalesce(array_agg(-1), '{}')
          INTO ids, sevs, ns
          FROM old_rows WHERE status = 'open';
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN NULL;
    END IF;
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
    RETURN NULL;
END
$$;

CREATE TRIGGER findings_open_ins AFTER INSERT ON sspm.findings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_open_counts();
CREATE TRIGGER findings_open_upd AFTER UPDATE ON sspm.findings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_open_counts();
CREATE TRIGGER findings_open_del AFTER DELETE ON sspm.findings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_open_counts();
CREATE TRIGGER findings_open_truncate AFTER TRUNCATE ON sspm.findings
    FOR EACH STATEMENT EXECUTE FUNCTION sspm.instances_track_open_counts();

-- Backfill, in this migration's transaction: CREATE TRIGGER above holds a lock on scans
-- and findings that keeps writers out until commit, so nothing changes between the
-- counts taken here and the triggers taking over.
UPDATE sspm.instances i
   SET last_succeeded_scan_id = ls.id, last_score = ls.score, last_coverage = ls.coverage
  FROM sspm.instances i2
  LEFT JOIN LATERAL (
      SELECT s.id, s.score, s.coverage FROM sspm.scans s
      WHERE s.instance_id = i2.id AND s.status = 'succeeded'
      ORDER BY s.started_at DESC, s.id DESC
      LIMIT 1
  ) ls ON true
 WHERE i.id = i2.id AND ls.id IS NOT NULL;

UPDATE sspm.instances i
   SET open_critical = c.critical, open_high = c.high, open_medium = c.medium,
       open_low = c.low, open_info = c.info, open_total = c.total
  FROM (
      SELECT instance_id,
             count(*) FILTER (WHERE severity = 'critical') AS critical,
             count(*) FILTER (WHERE severity = 'high')     AS high,
             count(*) FILTER (WHERE severity = 'medium')   AS medium,
             count(*) FILTER (WHERE severity = 'low')      AS low,
             count(*) FILTER (WHERE severity = 'info')     AS info,
             count(*)                                      AS total
      FROM sspm.findings WHERE status = 'open'
      GROUP BY instance_id
  ) c
 WHERE i.id = c.instance_id;

-- The fleet sorted by score: keyset order (score, name), no score first. Names are unique
-- case-insensitively (instances_name_key), so the pair is a key and paging is an index walk.
CREATE INDEX instances_score_order_idx ON sspm.instances ((coalesce(last_score, -1)), lower(name));

-- Readers see the summary too (the grant on sspm.instances is a column list, fail closed).
GRANT SELECT (
    last_succeeded_scan_id, last_score, last_coverage,
    open_critical, open_high, open_medium, open_low, open_info, open_total
) ON sspm.instances TO sspm_reader;
