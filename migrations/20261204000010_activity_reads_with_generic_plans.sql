-- Issue 17: a steady scan's two reads of the partitioned activity log run from a plan
-- made once per connection, not once per call.
--
-- Why: both reads bound `created_at` by parameters. With custom plans (what
-- plan_cache_mode = auto picks for them) PostgreSQL plans every call again to prune the
-- monthly partitions at plan time: ~0.12 ms of planning for ~0.03 ms of execution per
-- call (pgbench, one client, the throughput_steady data: 0.27-0.29 ms per call against
-- 0.15 ms with a generic plan). A generic plan prunes the same partitions when the
-- executor starts (run-time pruning). A PL/pgSQL function keeps its plans for the
-- session, and its SET clause forces the generic one for these two statements alone:
-- the rest of the daemon's statements keep the planner's choice (the console's
-- optional-filter queries need custom plans). A SQL function would be planned on every
-- call (measured 0.46-0.53 ms), which is why these are PL/pgSQL.
--
-- The statements are the ones `db::activity::for_scan` ran before; their results are the
-- same.

-- The start of the latest run of failed logins that reaches into [p_from, p_to]: the
-- latest failure in that range that follows the previous one by more than
-- p_gap_minutes (see `db::activity::for_scan`). NULL when there is none.
CREATE FUNCTION sspm.failed_login_run_start(
    p_instance_id uuid, p_from timestamptz, p_to timestamptz, p_gap_minutes bigint
) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (
        SELECT max(f.created_at)
        FROM (SELECT e.created_at, lag(e.created_at) OVER (ORDER BY e.created_at) AS prev
              FROM sspm.activity_events e
              WHERE e.instance_id = p_instance_id AND e.activity_type = 'admin_login_failure'
                AND e.created_at >= p_from AND e.created_at <= p_to) f
        WHERE f.prev IS NULL OR f.created_at - f.prev > p_gap_minutes * interval '1 minute'
    );
END
$$;

-- Latest activity per performer among events in [p_from, p_before), failed logins
-- excluded: the inactivity checks' look-back before the events read one by one.
CREATE FUNCTION sspm.activity_last_per_performer(
    p_instance_id uuid, p_from timestamptz, p_before timestamptz
) RETURNS TABLE (performed_by_id text, performed_by_email text, last_at timestamptz)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT e.performed_by_id, e.performed_by_email, max(e.created_at)
        FROM sspm.activity_events e
        WHERE e.instance_id = p_instance_id AND e.created_at >= p_from AND e.created_at < p_before
          AND e.activity_type <> 'admin_login_failure'
          AND (e.performed_by_id IS NOT NULL OR e.performed_by_email IS NOT NULL)
        GROUP BY e.performed_by_id, e.performed_by_email;
END
$$;
