-- DuckDB: the two big slot tables keep no primary key and no index.
--
-- DuckDB maintains a PRIMARY KEY or index as an ART that every insert and delete updates row by
-- row; on these tables (~7 metric rows per model per slot) it made loads 2-8x slower, the rerun of a
-- loaded day worst of all, and it held memory that grew with the history. Nothing needs them here:
-- a slot's rows are replaced by delete-then-insert in one transaction (never ON CONFLICT), the
-- batch is deduplicated by slot before it is staged, flattening quarantines repeated ids, and the
-- DuckDB file has one writer at a time. The slot delete is a hash semi-join that DuckDB prunes by
-- zone maps; the views scan. Uniqueness of the declared keys stays checked by publish's data-quality
-- checks and by the tests. PostgreSQL keeps its keys and B-tree indexes.
CREATE TABLE nugen.model_snapshots_unkeyed AS
    SELECT * FROM nugen.model_snapshots ORDER BY snapshot_at, account_id, model_key;
DROP TABLE nugen.model_snapshots;
ALTER TABLE nugen.model_snapshots_unkeyed RENAME TO model_snapshots;
ALTER TABLE nugen.model_snapshots ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE nugen.model_snapshots ALTER COLUMN model_id SET NOT NULL;
ALTER TABLE nugen.model_snapshots ALTER COLUMN snapshot_at SET NOT NULL;

CREATE TABLE nugen.model_metrics_unkeyed AS
    SELECT * FROM nugen.model_metrics ORDER BY snapshot_at, account_id, model_id, metric;
DROP TABLE nugen.model_metrics;
ALTER TABLE nugen.model_metrics_unkeyed RENAME TO model_metrics;
ALTER TABLE nugen.model_metrics ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE nugen.model_metrics ALTER COLUMN model_id SET NOT NULL;
ALTER TABLE nugen.model_metrics ALTER COLUMN snapshot_at SET NOT NULL;
ALTER TABLE nugen.model_metrics ALTER COLUMN metric SET NOT NULL;
