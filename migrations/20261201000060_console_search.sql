-- The console's findings text filter: "title or resource contains this text, any case"
-- (ILIKE '%text%'). Without an index that is a scan of every finding of the severity
-- (seconds over a million findings); trigram GIN indexes answer it from the index, and
-- the planner still walks (status, severity, id) when the text is common enough that a
-- page fills quickly.
--
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension: the database owner
-- may create it without superuser. Where the migrating role may not, create it once as
-- a superuser (CREATE EXTENSION pg_trgm;) and run `intercom-sspm migrate` again.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX findings_title_trgm_idx ON sspm.findings USING gin (title gin_trgm_ops);
CREATE INDEX findings_resource_trgm_idx ON sspm.findings USING gin (resource gin_trgm_ops);
