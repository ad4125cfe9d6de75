-- Issue 13: the findings text filter's trigram indexes also hold the status, so a rare
-- term under the default "open" filter is answered from the index alone.
--
-- Why: the page filters by status nearly always (open by default). With trigram-only
-- indexes every finding containing the term is a candidate that must be fetched from the
-- heap to test its status: a term found in 10,000 resolved findings and no open one cost
-- ~25 ms per severity searched over a million findings (console_pages, benches/README).
-- With (status, text) the GIN index intersects the status entry with the trigrams, and
-- only open matches reach the heap (~5 ms for the same term). A filter on every status
-- ("any") uses the text column alone, as before.
--
-- btree_gin (the GIN operator class for plain equality on text) ships with PostgreSQL
-- (contrib) and is a trusted extension, like pg_trgm: the database owner may create it.
-- Where the migrating role may not, create it once as a superuser
-- (CREATE EXTENSION btree_gin;) and run `intercom-sspm migrate` again.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX findings_status_title_trgm_idx ON sspm.findings USING gin (status, title gin_trgm_ops);
CREATE INDEX findings_status_resource_trgm_idx ON sspm.findings USING gin (status, resource gin_trgm_ops);
DROP INDEX sspm.findings_title_trgm_idx;
DROP INDEX sspm.findings_resource_trgm_idx;
