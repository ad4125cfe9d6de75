-- Issue 17: the row-level trigger that follows a finding's status or severity change
-- (20261202000040) updates the instance's open counts with one cached UPDATE instead of
-- calling sspm.instances_add_open_deltas.
--
-- Why: that function is LANGUAGE sql and not inlinable (an UPDATE), so every call planned
-- its body again (unnest, GROUP BY with six FILTERed sums, a join) for the one or two rows
-- a status change moves. A steady scan resolves or reopens about two findings: two such
-- calls were ~8 % of Postgres's time per scan in throughput_steady (pg_stat_statements,
-- benches/README.md). PL/pgSQL keeps the plan of the statement below for the session.
-- The arithmetic is the function's: -1 for the old row when it was open, +1 for the new
-- row when it is, per severity and in total, on the old and the new instance (the same
-- one but for an UPDATE that moves a finding, which nothing does today). The statement-
-- level triggers (INSERT, DELETE, TRUNCATE) keep calling sspm.instances_add_open_deltas:
-- they count many rows in one call.
CREATE OR REPLACE FUNCTION sspm.instances_track_open_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone  int := CASE WHEN OLD.status = 'open' THEN -1 ELSE 0 END;
    added int := CASE WHEN NEW.status = 'open' THEN 1 ELSE 0 END;
BEGIN
    UPDATE sspm.instances i
       SET open_critical = i.open_critical
                           + CASE WHEN i.id = OLD.instance_id AND OLD.severity = 'critical' THEN gone ELSE 0 END
                           + CASE WHEN i.id = NEW.instance_id AND NEW.severity = 'critical' THEN added ELSE 0 END,
           open_high     = i.open_high
                           + CASE WHEN i.id = OLD.instance_id AND OLD.severity = 'high' THEN gone ELSE 0 END
                           + CASE WHEN i.id = NEW.instance_id AND NEW.severity = 'high' THEN added ELSE 0 END,
           open_medium   = i.open_medium
                           + CASE WHEN i.id = OLD.instance_id AND OLD.severity = 'medium' THEN gone ELSE 0 END
                           + CASE WHEN i.id = NEW.instance_id AND NEW.severity = 'medium' THEN added ELSE 0 END,
           open_low      = i.open_low
                           + CASE WHEN i.id = OLD.instance_id AND OLD.severity = 'low' THEN gone ELSE 0 END
                           + CASE WHEN i.id = NEW.instance_id AND NEW.severity = 'low' THEN added ELSE 0 END,
           open_info     = i.open_info
                           + CASE WHEN i.id = OLD.instance_id AND OLD.severity = 'info' THEN gone ELSE 0 END
                           + CASE WHEN i.id = NEW.instance_id AND NEW.severity = 'info' THEN added ELSE 0 END,
           open_total    = i.open_total
                           + CASE WHEN i.id = OLD.instance_id THEN gone ELSE 0 END
                           + CASE WHEN i.id = NEW.instance_id THEN added ELSE 0 END
     WHERE i.id IN (OLD.instance_id, NEW.instance_id);
    RETURN NULL;
END
$$;
