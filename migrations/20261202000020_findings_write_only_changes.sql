-- Issue 17: a steady scan writes only the findings whose content changed.
--
-- content_digest: a 64-bit digest (SHA-256, first 8 bytes, big-endian) of what the scanner
-- writes into a finding from the check's draft and the catalog: severity, title, evidence,
-- remediation, compliance. The scanner compares it (with status and exception_id, which
-- other writers change) against the draft's digest and, when they match, moves only
-- last_seen_at/last_scan_id in one statement instead of rewriting the row with its
-- evidence. NULL means "not known": the next scan writes the row in full and fills it in,
-- which is what every existing row gets once. Anything else that rewrites those five
-- columns (a data migration) must set content_digest to NULL.
ALTER TABLE sspm.findings ADD COLUMN content_digest bigint;

-- last_scan_id moves on every open finding at every scan, and a foreign key checks the
-- referenced scan row once per moved row (an index probe through the RI trigger, ~80 per
-- steady scan). The one writer of a dangling reference is retention deleting old scans:
-- housekeeping::prune now clears them itself in the same transaction (one anti-join over
-- findings per prune, instead of the constraint's unindexed search per deleted scan).
-- Consumers see what they saw: a scan id that exists, or NULL once the scan is pruned.
ALTER TABLE sspm.findings DROP CONSTRAINT findings_last_scan_id_fkey;

-- A steady scan's one write to an unchanged finding (last_seen_at, last_scan_id) and to an
-- unchanged teammate (last_seen_at) touches no indexed column, so it can be a HOT update
-- (no new index entries, the trigram GIN indexes included) when the row's page has room
-- for the new version. Free space is left on each page for that; it applies to pages
-- written from now on.
ALTER TABLE sspm.findings SET (fillfactor = 50);
ALTER TABLE sspm.admins SET (fillfactor = 70);
