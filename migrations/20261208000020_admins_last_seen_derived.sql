-- Issue 17, as 20261208000010 did for findings: a steady scan rewrote every listed teammate
-- only to move `last_seen_at` (~50 HOT updates per scan, each dirtying its page). A teammate
-- not removed was listed by the instance's last succeeded scan (a scan whose `/admins` call
-- failed ends failed and writes no teammate), so its `last_seen_at` is that scan's time:
-- `sspm.instances.findings_seen_at`, written with the scan's instance update.
--
-- Readers see no change: `sspm.admins` becomes a view with the same columns in the same
-- order over the renamed table `sspm.admin_rows`. A removed teammate's `last_seen_at` is
-- stored: the removing scan writes the instance's previous value into it (src/db/workspace.rs).
-- Rows written before this migration keep their stored value until the instance's next
-- succeeded scan sets `findings_seen_at` (the COALESCE).

ALTER TABLE sspm.admins RENAME TO admin_rows;

CREATE VIEW sspm.admins AS
SELECT a.instance_id, a.admin_id, a.name, a.email, a.job_title, a.role, a.role_id,
       a.has_inbox_seat, a.away_mode_enabled, a.away_since, a.team_ids, a.first_seen_at,
       CASE WHEN a.removed_at IS NULL
            THEN COALESCE((SELECT i.findings_seen_at FROM sspm.instances i
                           WHERE i.id = a.instance_id), a.last_seen_at)
            ELSE a.last_seen_at END AS last_seen_at,
       a.removed_at, a.last_active_at, a.last_login_at
FROM sspm.admin_rows a;

REVOKE ALL ON sspm.admin_rows FROM sspm_reader;
GRANT SELECT ON sspm.admins TO sspm_reader;

COMMENT ON COLUMN sspm.instances.findings_seen_at IS
    'The last succeeded scan''s time: last_seen_at of the findings it found again (flagged in finding_rows) and of the teammates not removed (admin_rows)';
