-- The exceptions a scan's lifecycle plan starts from are read after the instance row's
-- lock is granted, not as of the moment the statement that takes it began.
--
-- Why: `leases::lock_for_scan_write` locks the instance row, locks its findings and reads
-- the exceptions in force in one statement. Under READ COMMITTED that statement has one
-- snapshot, taken before it waits for the instance lock. The rows it locks are read again
-- as committed meanwhile (Postgres follows a locked row to its newest version), but the
-- exceptions are not locked: an exception added (or removed) by a transaction that held
-- the instance lock while the scan waited was missing (or still present) in the scan's
-- plan, while the findings that transaction muted (or reopened) were read as it left them.
-- The plan then undid the change ("exception ended" on a finding just muted, or a removed
-- exception applied again) until the next scan. A VOLATILE function takes a new snapshot
-- for each query it runs; the statement calls it after the branch that takes the lock
-- (an Append runs its branches in order), so it sees every transaction that released the
-- lock before the scan got it. PL/pgSQL, not SQL: a volatile SQL function is not inlined
-- and plans its query on every call (pgbench, BEGIN + lock + read + ROLLBACK: 0.55 ms
-- against 0.42-0.53 ms for the plain read), while PL/pgSQL keeps the plan for the session.
CREATE FUNCTION sspm.exceptions_in_force(instance uuid, at timestamptz)
RETURNS TABLE (id uuid, check_id text, resource text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
BEGIN
    RETURN QUERY
        SELECT e.id, e.check_id, e.resource
        FROM sspm.exceptions e
        WHERE e.instance_id = instance AND (e.expires_at IS NULL OR e.expires_at > at);
END
$$;
