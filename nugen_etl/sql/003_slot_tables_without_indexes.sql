-- Version 003 changes DuckDB only (duckdb/003_slot_tables_without_indexes.sql: its slot tables drop
-- their ART primary keys and indexes). PostgreSQL keeps its primary keys and B-tree indexes, which
-- its slot deletes and views use; this records the version there.
SELECT 1;
