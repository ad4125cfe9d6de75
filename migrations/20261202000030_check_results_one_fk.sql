-- Issue 17: every inserted check_results row (~33 per scan) fired two foreign-key checks,
-- one on sspm.scans and one on sspm.instances (each an index probe through an RI trigger).
-- The second is implied by the first: a scan belongs to one instance, deleting an instance
-- deletes its scans (scans.instance_id ON DELETE CASCADE) and those delete their check
-- results (check_results.scan_id ON DELETE CASCADE), so no check result can outlive its
-- instance. The one writer, the scan, takes instance_id and scan_id from the same scan row.
-- Consumers see the same rows; instance_id stays, indexed as before, for their joins.
ALTER TABLE sspm.check_results DROP CONSTRAINT check_results_instance_id_fkey;
