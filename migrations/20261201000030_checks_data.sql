-- Check catalog data changes (issue 16).
--
-- activity_log_access is now severity `info` (weight 0 in the posture score): a token
-- limited to "Read admins", as Intercom advises, must not lower the score; the coverage
-- figure already shows the activity checks that are not evaluated. Findings carry the
-- severity they were raised with, so existing ones are brought in line here (open, muted
-- and resolved alike; a reopened finding would take the catalog's severity anyway).
-- sspm.check_results keeps the severity each past scan used, like the score stored with
-- that scan: history is not rewritten.
UPDATE sspm.findings
   SET severity = 'info'
 WHERE check_id = 'activity_log_access'
   AND severity <> 'info';

-- Check categories are not stored (they are catalog data served from the binary), so the
-- single spelling `integration` (formerly also `integrations`) needs no data migration.
