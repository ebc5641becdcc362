-- model_metrics is stored as one row per model snapshot with its metrics as two parallel lists, and
-- read through a view of the same name, columns and grain as the table it replaces.
--
-- In the long table a model snapshot was ~7 rows, each repeating its account, model, slot and key:
-- 85% of a load's rows, ~4x the size on disk, and most of what a rebuild spent in PostgreSQL
-- (docs/performance.md). The list table's key leads with (account_id, snapshot_at), so the slot
-- replace deletes through it; the view's filters on those columns reach it too.
CREATE TABLE nugen.model_metric_lists (
    account_id    TEXT NOT NULL,
    snapshot_at   TIMESTAMPTZ NOT NULL,
    model_id      TEXT NOT NULL,
    snapshot_date DATE,
    model_key     TEXT,
    metric_names  TEXT[],
    metric_values DOUBLE PRECISION[],
    PRIMARY KEY (account_id, snapshot_at, model_id)
);

INSERT INTO nugen.model_metric_lists
SELECT account_id, snapshot_at, model_id, min(snapshot_date), min(model_key),
       array_agg(metric ORDER BY metric), array_agg(value ORDER BY metric)
FROM nugen.model_metrics
GROUP BY account_id, snapshot_at, model_id;

DROP TABLE nugen.model_metrics;

-- Grain: one row per numeric leaf (dotted path) of one model record per (account, slot).
CREATE VIEW nugen.model_metrics AS
SELECT l.account_id, l.model_id, l.snapshot_at, m.metric, l.snapshot_date, l.model_key, m.value
FROM nugen.model_metric_lists AS l
CROSS JOIN LATERAL unnest(l.metric_names, l.metric_values) AS m(metric, value);
