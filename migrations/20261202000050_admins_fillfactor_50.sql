-- Issue 17: every complete scan updates every listed teammate's row (last_seen_at at
-- least), so each page of sspm.admins needs room for a new version of every row on it for
-- that update to be HOT (no new index entries). At fillfactor 70 (20261202000020) a page
-- of ~14 rows has room for ~6: in throughput_steady's measured pass only 56 % of the
-- 100,000 admin updates were HOT. 50 leaves room for one new version per row, as on
-- sspm.findings. It applies to pages written from now on; the table grows by ~40 %.
ALTER TABLE sspm.admins SET (fillfactor = 50);
