-- DuckDB: the rollup tables keep no key or index (as its slot tables, 003): an ART would be updated
-- row by row on every load and held in memory as the history grows, while the maintenance deletes and
-- inserts by hash joins that zone maps prune. PostgreSQL's keys and indexes: postgresql/008_rollup_keys.sql.
SELECT 1;
