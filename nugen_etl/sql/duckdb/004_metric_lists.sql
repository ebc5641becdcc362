-- model_metrics is stored as one row per model snapshot with its metrics as two parallel lists, and
-- read through a view of the same name, columns and grain as the table it replaces (see
-- ../004_metric_lists.sql). Like the other big slot table here (003), it keeps no ART key.
CREATE TABLE nugen.model_metric_lists (
    account_id    VARCHAR NOT NULL,
    snapshot_at   TIMESTAMPTZ NOT NULL,
    model_id      VARCHAR NOT NULL,
    snapshot_date DATE,
    model_key     VARCHAR,
    metric_names  VARCHAR[],
    metric_values DOUBLE[]
);

INSERT INTO nugen.model_metric_lists
SELECT account_id, snapshot_at, model_id, min(snapshot_date), min(model_key),
       list(metric ORDER BY metric), list(value ORDER BY metric)
FROM nugen.model_metrics
GROUP BY account_id, snapshot_at, model_id
ORDER BY snapshot_at, account_id, model_id;

DROP TABLE nugen.model_metrics;

-- Grain: one row per numeric leaf (dotted path) of one model record per (account, slot).
CREATE VIEW nugen.model_metrics AS
SELECT account_id, model_id, snapshot_at, unnest(metric_names) AS metric, snapshot_date, model_key,
       unnest(metric_values) AS value
FROM nugen.model_metric_lists;
