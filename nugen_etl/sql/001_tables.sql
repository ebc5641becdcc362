-- Tables mirror the Arrow schemas of nugen_etl/schemas.py column for column, in order,
-- with the declared primary keys (tests/test_warehouse.py compares them on every engine).
-- Types: string TEXT, timestamp[UTC] TIMESTAMPTZ, date32 DATE, int64 BIGINT,
-- int32 INTEGER, float64 DOUBLE PRECISION, bool BOOLEAN.

-- Grain: one row per model record per (account, slot).
CREATE TABLE nugen.model_snapshots (
    account_id                      TEXT NOT NULL,
    model_id                        TEXT NOT NULL,
    snapshot_at                     TIMESTAMPTZ NOT NULL,
    snapshot_date                   DATE,
    fetched_at                      TIMESTAMPTZ,
    model_key                       TEXT,
    alignment_id                    TEXT,
    name                            TEXT,
    base_model                      TEXT,
    alignment_project               TEXT,
    created_date                    TIMESTAMPTZ,
    status                          TEXT,
    deployment_status               TEXT,
    endpoint                        TEXT,
    creator                         TEXT,
    usage_count                     BIGINT,
    last_used                       TIMESTAMPTZ,
    downloadable                    BOOLEAN,
    conversation_saving_enabled     BOOLEAN,
    accuracy                        DOUBLE PRECISION,
    uncertainty                     DOUBLE PRECISION,
    domain_violations               BIGINT,
    average_response_time           DOUBLE PRECISION,
    pm_accuracy                     DOUBLE PRECISION,
    pm_uncertainty                  DOUBLE PRECISION,
    pm_domain_violations            BIGINT,
    pm_average_response_time        DOUBLE PRECISION,
    pm_accuracy_before              DOUBLE PRECISION,
    pm_accuracy_after               DOUBLE PRECISION,
    pm_uncertainty_before           DOUBLE PRECISION,
    pm_uncertainty_after            DOUBLE PRECISION,
    pm_domain_violations_before     BIGINT,
    pm_domain_violations_after      BIGINT,
    eval_id                         TEXT,
    eval_status                     TEXT,
    eval_method                     TEXT,
    eval_created_at                 TIMESTAMPTZ,
    eval_completed_at               TIMESTAMPTZ,
    eval_raw_answers_count          BIGINT,
    eval_total_questions            BIGINT,
    eval_accuracy                   DOUBLE PRECISION,
    eval_metrics_accuracy           DOUBLE PRECISION,
    eval_metrics_uncertainty        DOUBLE PRECISION,
    eval_metrics_domain_violations  BIGINT,
    eval_metrics_overall_score      DOUBLE PRECISION,
    extra_json                      TEXT,
    evaluation_data_json            TEXT,
    quality_issues                  TEXT,
    PRIMARY KEY (account_id, model_id, snapshot_at)
);

-- Grain: one row per numeric leaf (dotted path) of one model record per (account, slot).
CREATE TABLE nugen.model_metrics (
    account_id    TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    snapshot_at   TIMESTAMPTZ NOT NULL,
    metric        TEXT NOT NULL,
    snapshot_date DATE,
    model_key     TEXT,
    value         DOUBLE PRECISION,
    PRIMARY KEY (account_id, model_id, snapshot_at, metric)
);

-- Grain: one row per (account, evaluation_id), upserted: first/last seen across all slots.
CREATE TABLE nugen.evaluations (
    account_id           TEXT NOT NULL,
    evaluation_id        TEXT NOT NULL,
    model_id             TEXT,
    model_key            TEXT,
    status               TEXT,
    method               TEXT,
    created_at           TIMESTAMPTZ,
    completed_at         TIMESTAMPTZ,
    raw_answers_count    BIGINT,
    total_questions      BIGINT,
    accuracy             DOUBLE PRECISION,
    uncertainty          DOUBLE PRECISION,
    domain_violations    BIGINT,
    overall_score        DOUBLE PRECISION,
    first_seen_at        TIMESTAMPTZ,
    last_seen_at         TIMESTAMPTZ,
    evaluation_data_json TEXT,
    PRIMARY KEY (account_id, evaluation_id)
);

-- Grain: one row per record that could not be flattened, per (account, slot, position in the answer).
CREATE TABLE nugen.quarantined_records (
    account_id  TEXT NOT NULL,
    snapshot_at TIMESTAMPTZ NOT NULL,
    position    INTEGER NOT NULL,
    reason      TEXT,
    raw_json    TEXT,
    PRIMARY KEY (account_id, snapshot_at, position)
);

-- Grain: one row per (account, slot): what happened to that account in that slot.
CREATE TABLE nugen.account_runs (
    account_id        TEXT NOT NULL,
    snapshot_at       TIMESTAMPTZ NOT NULL,
    outcome           TEXT NOT NULL,
    http_status       INTEGER,
    model_count       INTEGER,
    quarantined_count INTEGER,
    coerced_count     INTEGER,
    attempts          INTEGER,
    fetched_at        TIMESTAMPTZ,
    error             TEXT,
    PRIMARY KEY (account_id, snapshot_at)
);

-- The slot replace deletes by (account_id, snapshot_at): without these it would scan the table.
CREATE INDEX model_snapshots_slot_idx ON nugen.model_snapshots (account_id, snapshot_at);
CREATE INDEX model_metrics_slot_idx ON nugen.model_metrics (account_id, snapshot_at);
-- The views partition and filter by (account_id, model_key) ordered by snapshot_at.
CREATE INDEX model_snapshots_key_idx ON nugen.model_snapshots (account_id, model_key, snapshot_at);
