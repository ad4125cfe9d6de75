-- Consumer read path: a read-only role for dashboards, SIEM jobs and ticketing syncs, and
-- three convenience views. Documented in docs/DATABASE.md.
--
-- Written to be re-runnable: roles are cluster-wide, so `sspm_reader` may already exist
-- (another database of the same cluster, an operator who created it first); every other
-- statement is a GRANT/REVOKE or CREATE OR REPLACE.

-- NOLOGIN: operators grant it to their own login roles (GRANT sspm_reader TO dashboards).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sspm_reader') THEN
        CREATE ROLE sspm_reader NOLOGIN;
    END IF;
EXCEPTION
    -- Two databases migrating at the same moment both see no role; the loser of the race
    -- fails on pg_authid's unique index (23505) or with duplicate_object (42710). The
    -- role exists either way, which is all we need.
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END
$$;

-- Open findings with the instance's name and region, the everyday dashboard query.
-- Plain views (no security_barrier): they filter nothing for access control (a reader
-- may read every finding anyway) and hide secrets by leaving the columns out, so the
-- barrier would only cost planner freedom. Views run with their owner's privileges, so a
-- reader needs SELECT on the view, not on the instances columns it joins.
CREATE OR REPLACE VIEW sspm.open_findings AS
SELECT
    f.id            AS finding_id,
    f.instance_id,
    i.name          AS instance_name,
    i.region,
    f.check_id,
    f.severity,
    -- 1 = critical .. 5 = info, for ORDER BY (the text sorts alphabetically).
    CASE f.severity
        WHEN 'critical' THEN 1 WHEN 'high' THEN 2 WHEN 'medium' THEN 3
        WHEN 'low' THEN 4 ELSE 5
    END             AS severity_rank,
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

-- One row per instance: identity, health, the latest succeeded scan, open counts.
CREATE OR REPLACE VIEW sspm.instance_posture AS
SELECT
    i.id,
    i.name,
    i.region,
    i.workspace_id,
    i.workspace_name,
    i.enabled,
    i.status,
    i.status_detail,
    i.schedule,
    i.next_scan_at,
    i.last_scan_at,
    i.last_success_at,
    ls.id           AS latest_scan_id,
    ls.score        AS latest_score,
    ls.coverage     AS latest_coverage,
    ls.finished_at  AS latest_scan_finished_at,
    oc.open_critical,
    oc.open_high,
    oc.open_medium,
    oc.open_low,
    oc.open_info,
    oc.open_total
FROM sspm.instances i
-- Only succeeded scans carry a score; failed and abandoned ones must not blank it out.
-- Scans of one instance never overlap (leases), so started_at orders them and the
-- (instance_id, started_at DESC) index serves this.
LEFT JOIN LATERAL (
    SELECT s.id, s.score, s.coverage, s.finished_at
    FROM sspm.scans s
    WHERE s.instance_id = i.id AND s.status = 'succeeded'
    ORDER BY s.started_at DESC, s.id DESC
    LIMIT 1
) ls ON true
-- An aggregate without GROUP BY always yields one row, so the counts are 0, never NULL.
LEFT JOIN LATERAL (
    SELECT
        count(*) FILTER (WHERE f.severity = 'critical') AS open_critical,
        count(*) FILTER (WHERE f.severity = 'high')     AS open_high,
        count(*) FILTER (WHERE f.severity = 'medium')   AS open_medium,
        count(*) FILTER (WHERE f.severity = 'low')      AS open_low,
        count(*) FILTER (WHERE f.severity = 'info')     AS open_info,
        count(*)                                        AS open_total
    FROM sspm.findings f
    WHERE f.instance_id = i.id AND f.status = 'open'
) oc ON true;

-- Every finding transition with enough context to read it on its own.
-- severity/title are the finding's current ones (the catalog may change them).
CREATE OR REPLACE VIEW sspm.finding_history AS
SELECT
    e.id            AS event_id,
    e.at,
    e.finding_id,
    e.instance_id,
    i.name          AS instance_name,
    f.check_id,
    f.resource,
    f.severity,
    f.title,
    e.from_status,
    e.to_status,
    e.reason,
    e.scan_id
FROM sspm.finding_events e
JOIN sspm.findings f ON f.id = e.finding_id
JOIN sspm.instances i ON i.id = e.instance_id;

GRANT USAGE ON SCHEMA sspm TO sspm_reader;

GRANT SELECT ON
    sspm.scans,
    sspm.check_results,
    sspm.findings,
    sspm.finding_events,
    sspm.admins,
    sspm.activity_events,
    sspm.exceptions,
    sspm.attestations,
    sspm.open_findings,
    sspm.instance_posture,
    sspm.finding_history
TO sspm_reader;

-- instances holds the sealed tokens, so readers get a column list. Revoking the
-- table-level privilege first also revokes every column privilege, which undoes a
-- broader grant an operator may have made (GRANT SELECT ON ALL TABLES ...) before
-- the list below is applied. Left out on purpose:
--   token_ciphertext, token_nonce  the sealed token;
--   token_ref                      where the plaintext token lives (file path or
--                                  environment variable on the daemon's host);
--   lease_token                    the scheduler's fencing token, of no use to readers.
-- token_key_id is included: it is a public hash prefix of the key, and lets a dashboard
-- show which instances still need re-sealing during a key rotation.
-- A column added to instances later is NOT readable until a migration adds it here
-- (fail closed).
REVOKE SELECT ON sspm.instances FROM sspm_reader;
GRANT SELECT (
    id,
    name,
    region,
    workspace_id,
    workspace_name,
    token_key_id,
    allowed_domains,
    check_overrides,
    enabled,
    schedule,
    next_scan_at,
    lease_owner,
    lease_expires_at,
    lease_scan_id,
    consecutive_failures,
    status,
    status_detail,
    last_scan_at,
    last_scan_id,
    last_success_at,
    activity_cursor_at,
    activity_covered_from,
    created_at,
    updated_at
) ON sspm.instances TO sspm_reader;
