-- Issue 17: the open-count row trigger adds its delta with one plain UPDATE.
--
-- Why: a steady scan that resolves or reopens findings fires findings_open_upd_row once
-- per changed row, and each call went through instances_add_open_deltas, an SQL function
-- whose unnest + GROUP BY + FILTER aggregate is set up again on every call: ~0.27 ms per
-- row against ~0.05 ms for the UPDATE itself (EXPLAIN ANALYZE on the throughput_steady
-- database, benches/README.md). A row changes at most two (instance, severity) counts,
-- so it needs no grouping.
--
-- The arithmetic stays in one place: instances_add_open_delta adds one (instance,
-- severity, n) delta; the row trigger calls it for the old and the new side, and the
-- statement triggers (INSERT, DELETE) group their transition rows by instance and
-- severity and call it once per group (at most five per instance). Counts are the same:
-- the open-count tests (instance_summary, scans) pass unchanged.
CREATE FUNCTION sspm.instances_add_open_delta(inst uuid, sev text, n int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    UPDATE sspm.instances
       SET open_critical = open_critical + CASE WHEN sev = 'critical' THEN n ELSE 0 END,
           open_high     = open_high     + CASE WHEN sev = 'high'     THEN n ELSE 0 END,
           open_medium   = open_medium   + CASE WHEN sev = 'medium'   THEN n ELSE 0 END,
           open_low      = open_low      + CASE WHEN sev = 'low'      THEN n ELSE 0 END,
           open_info     = open_info     + CASE WHEN sev = 'info'     THEN n ELSE 0 END,
           open_total    = open_total    + n
     WHERE id = inst;
END
$$;

CREATE OR REPLACE FUNCTION sspm.instances_add_open_deltas(ids uuid[], sevs text[], ns int[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT u.instance_id, u.severity, sum(u.n)::int AS n
          FROM unnest(ids, sevs, ns) AS u (instance_id, severity, n)
         GROUP BY u.instance_id, u.severity
    LOOP
        PERFORM sspm.instances_add_open_delta(g.instance_id, g.severity, g.n);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION sspm.instances_track_open_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'open' THEN
        PERFORM sspm.instances_add_open_delta(OLD.instance_id, OLD.severity, -1);
    END IF;
    IF NEW.status = 'open' THEN
        PERFORM sspm.instances_add_open_delta(NEW.instance_id, NEW.severity, 1);
    END IF;
    RETURN NULL;
END
$$;
