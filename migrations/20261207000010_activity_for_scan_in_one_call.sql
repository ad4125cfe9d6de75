-- Issue 17: what a scan reads of the stored activity log in one call, not three.
--
-- Why: `db::activity::for_scan` ran `failed_login_run_start`, then the events from the
-- bound it gives, then (when that bound is later than the look-back) the aggregate per
-- performer: three round trips, and the events' read planned on every call (its
-- `created_at` bound is a parameter: custom plans prune the monthly partitions at plan
-- time, see migration 20261204000010). One PL/pgSQL function does the three reads from
-- plans kept for the session, and returns them as one result: a first row with the
-- bound (kind 0), the events (kind 1), the per-performer aggregate (kind 2). The
-- statements and their results are the ones the three reads had.
--
-- RETURN QUERY collects a result before the function returns it: a workspace with
-- tens of thousands of events in its window spills that to a temporary file (work_mem);
-- the daemon still streams the rows it receives.
CREATE FUNCTION sspm.activity_for_scan(
    p_instance_id uuid, p_lookback_from timestamptz, p_needed_from timestamptz,
    p_gap_minutes bigint
) RETURNS TABLE (
    kind smallint, events_from timestamptz, event_id text, activity_type text,
    performed_by_id text, performed_by_email text, ip text, created_at timestamptz,
    description text, metadata_text text
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_from timestamptz;
BEGIN
    v_from := LEAST(
        COALESCE(sspm.failed_login_run_start(p_instance_id, p_lookback_from, p_needed_from,
                                             p_gap_minutes), p_needed_from),
        p_needed_from);
    kind := 0;
    events_from := v_from;
    RETURN NEXT;
    RETURN QUERY
        SELECT 1::smallint, NULL::timestamptz, e.event_id, e.activity_type, e.performed_by_id,
               e.performed_by_email, e.ip, e.created_at, e.description, e.metadata::text
        FROM sspm.activity_events e
        WHERE e.instance_id = p_instance_id AND e.created_at >= v_from;
    IF v_from > p_lookback_from THEN
        RETURN QUERY
            SELECT 2::smallint, NULL::timestamptz, NULL::text, NULL::text, l.performed_by_id,
                   l.performed_by_email, NULL::text, l.last_at, NULL::text, NULL::text
            FROM sspm.activity_last_per_performer(p_instance_id, p_lookback_from, v_from) l;
    END IF;
END
$$;
