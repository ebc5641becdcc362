-- Rollups: the five BI views read tables kept exact inside each load's transaction
-- (nugen_etl/warehouse/rollups.py), so a dashboard query reads rows in proportion to its answer,
-- not to the history. The views keep their names, columns, grain and semantics; the full-history
-- definitions they replace (002) are the reference tests/test_rollups.py compares them with.
-- The migration fills the rollups from the snapshots in the same transaction (migrations.FOLLOW_UPS);
-- `nugen-etl migrate --rebuild-rollups` does it again at any time. Keys and indexes: 008.

-- Grain: one row per (account_id, model_key, day) with at least one snapshot.
CREATE TABLE nugen.rollup_model_daily (
    account_id                  TEXT NOT NULL,
    model_key                   TEXT NOT NULL,
    day                         DATE NOT NULL,
    observations                INTEGER NOT NULL,
    first_snapshot_at           TIMESTAMPTZ NOT NULL,
    last_snapshot_at            TIMESTAMPTZ NOT NULL,
    first_usage_count           BIGINT,
    usage_count                 BIGINT,
    usage_delta_within_day      BIGINT,
    usage_delta                 BIGINT,
    first_status                TEXT,
    first_deployment_status     TEXT,
    model_id                    TEXT,
    alignment_id                TEXT,
    name                        TEXT,
    base_model                  TEXT,
    alignment_project           TEXT,
    created_date                TIMESTAMPTZ,
    status                      TEXT,
    deployment_status           TEXT,
    endpoint                    TEXT,
    creator                     TEXT,
    last_used                   TIMESTAMPTZ,
    downloadable                BOOLEAN,
    conversation_saving_enabled BOOLEAN,
    accuracy                    DOUBLE PRECISION,
    uncertainty                 DOUBLE PRECISION,
    domain_violations           BIGINT,
    average_response_time       DOUBLE PRECISION,
    record_count                BIGINT
);

-- Grain: one row per (account_id, model_key, changed_at).
CREATE TABLE nugen.rollup_status_changes (
    account_id             TEXT NOT NULL,
    model_key              TEXT NOT NULL,
    changed_at             TIMESTAMPTZ NOT NULL,
    day                    DATE NOT NULL,
    from_status            TEXT,
    to_status              TEXT,
    from_deployment_status TEXT,
    to_deployment_status   TEXT
);

-- Grain: one row per (account_id, model_key).
CREATE TABLE nugen.rollup_models_current (
    account_id                  TEXT NOT NULL,
    model_key                   TEXT NOT NULL,
    model_id                    TEXT,
    alignment_id                TEXT,
    name                        TEXT,
    base_model                  TEXT,
    alignment_project           TEXT,
    created_date                TIMESTAMPTZ,
    status                      TEXT,
    deployment_status           TEXT,
    endpoint                    TEXT,
    creator                     TEXT,
    usage_count                 BIGINT,
    last_used                   TIMESTAMPTZ,
    downloadable                BOOLEAN,
    conversation_saving_enabled BOOLEAN,
    accuracy                    DOUBLE PRECISION,
    uncertainty                 DOUBLE PRECISION,
    domain_violations           BIGINT,
    average_response_time       DOUBLE PRECISION,
    record_count                BIGINT,
    first_seen_at               TIMESTAMPTZ NOT NULL,
    last_seen_at                TIMESTAMPTZ NOT NULL
);

-- Grain: one row per account_id seen in account_runs.
CREATE TABLE nugen.rollup_account_health (
    account_id           TEXT NOT NULL,
    last_success_at      TIMESTAMPTZ,
    last_outcome         TEXT,
    consecutive_failures BIGINT,
    last_run_at          TIMESTAMPTZ
);

DROP VIEW nugen.models_latest;
DROP VIEW nugen.model_usage_daily;
DROP VIEW nugen.model_accuracy_daily;
DROP VIEW nugen.model_status_changes;
DROP VIEW nugen.account_health;

-- Grain: one row per (account_id, model_key). is_present: seen in the account's latest successful
-- (ok/empty) slot; a failed run is not a success, so it retires nothing.
CREATE VIEW nugen.models_latest AS
SELECT c.account_id, c.model_key, c.model_id, c.alignment_id, c.name, c.base_model, c.alignment_project,
       c.created_date, c.status, c.deployment_status, c.endpoint, c.creator, c.usage_count, c.last_used,
       c.downloadable, c.conversation_saving_enabled, c.accuracy, c.uncertainty, c.domain_violations,
       c.average_response_time, c.record_count, c.first_seen_at, c.last_seen_at,
       COALESCE(c.last_seen_at = h.last_success_at, FALSE) AS is_present
FROM nugen.rollup_models_current AS c
LEFT JOIN nugen.rollup_account_health AS h ON h.account_id = c.account_id;

-- Grain: one row per (account_id, model_key, day).
CREATE VIEW nugen.model_usage_daily AS
SELECT account_id, model_key, day, usage_count, usage_delta
FROM nugen.rollup_model_daily;

-- Grain: one row per (account_id, model_key, day): the metrics of the day's last snapshot.
CREATE VIEW nugen.model_accuracy_daily AS
SELECT account_id, model_key, day, accuracy, uncertainty, domain_violations
FROM nugen.rollup_model_daily;

-- Grain: one row per (account_id, model_key, changed_at).
CREATE VIEW nugen.model_status_changes AS
SELECT account_id, model_key, changed_at, from_status, to_status, from_deployment_status, to_deployment_status
FROM nugen.rollup_status_changes;

-- Grain: one row per account_id seen in account_runs.
CREATE VIEW nugen.account_health AS
SELECT account_id, last_success_at, last_outcome, consecutive_failures, last_run_at
FROM nugen.rollup_account_health;

COMMENT ON TABLE nugen.rollup_model_daily IS 'Rollup behind model_usage_daily and model_accuracy_daily, kept exact at load time. Grain: one row per (account_id, model_key, UTC day) with a snapshot; the day''s first and last snapshot and its usage.';
COMMENT ON COLUMN nugen.rollup_model_daily.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.rollup_model_daily.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.rollup_model_daily.day IS 'UTC date (snapshot_date).';
COMMENT ON COLUMN nugen.rollup_model_daily.observations IS 'Snapshots of the model_key that day.';
COMMENT ON COLUMN nugen.rollup_model_daily.first_snapshot_at IS 'The day''s first snapshot of the model_key.';
COMMENT ON COLUMN nugen.rollup_model_daily.last_snapshot_at IS 'The day''s last snapshot of the model_key.';
COMMENT ON COLUMN nugen.rollup_model_daily.first_usage_count IS 'usage_count at the day''s first snapshot (summed over records sharing the key).';
COMMENT ON COLUMN nugen.rollup_model_daily.usage_count IS 'usage_count at the day''s last snapshot (summed over records sharing the key).';
COMMENT ON COLUMN nugen.rollup_model_daily.usage_delta_within_day IS 'Sum of the pair deltas between the day''s own consecutive snapshots (reset rule as usage_delta); NULL when none is known.';
COMMENT ON COLUMN nugen.rollup_model_daily.usage_delta IS 'Inference calls during the day: usage_delta_within_day plus the pair from the previous observed day''s last snapshot to this day''s first; a drop (counter reset) counts as cur. NULL when no pair is known.';
COMMENT ON COLUMN nugen.rollup_model_daily.first_status IS 'status at the day''s first snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.first_deployment_status IS 'deployment_status at the day''s first snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.model_id IS 'The model''s id as the API reported it; changes when a model is deployed ("...-deployed"); at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.alignment_id IS 'The alignment project reference (API field alignment_id); may be null; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.name IS 'Model name as reported by the API (free text); at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.base_model IS 'Base model the alignment was trained on; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.alignment_project IS 'Alignment project name; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.created_date IS 'When the model was created (UTC); at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.status IS 'Model status as reported (e.g. DEPLOYED, READY, FAILED; the vendor also sends UNDEPLOYED, EVALUATED); at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.deployment_status IS 'Deployment status as reported (DEPLOYED, DEPLOYING, UNDEPLOYING, READY, FAILED, PROCESSING, UNDEPLOYED); may be null; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.endpoint IS 'Inference endpoint URL; empty string when undeployed; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.creator IS 'Creator as reported (an e-mail address); at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.last_used IS 'Last inference call (UTC); null if never used; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.downloadable IS 'Whether the model can be downloaded; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.conversation_saving_enabled IS 'Whether conversation saving is on; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.accuracy IS 'Canonical accuracy, 0..1: performance_metrics.accuracy, else accuracy_after, else evaluation_data metrics; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.uncertainty IS 'Canonical uncertainty, 0..1: performance_metrics.uncertainty, else uncertainty_after, else evaluation_data.metrics.uncertainty; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.domain_violations IS 'Canonical domain violations (count): plain, else _after, else evaluation_data.metrics; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.average_response_time IS 'performance_metrics.average_response_time, in seconds; at the day''s last snapshot.';
COMMENT ON COLUMN nugen.rollup_model_daily.record_count IS 'Records of this model_key in the snapshot (usually 1; usage_count sums them); at the day''s last snapshot.';

COMMENT ON TABLE nugen.rollup_status_changes IS 'Rollup behind model_status_changes, kept exact at load time. Grain: one row per (account_id, model_key, changed_at).';
COMMENT ON COLUMN nugen.rollup_status_changes.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.rollup_status_changes.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.rollup_status_changes.changed_at IS 'Slot in which the change was first observed.';
COMMENT ON COLUMN nugen.rollup_status_changes.from_status IS 'status before.';
COMMENT ON COLUMN nugen.rollup_status_changes.to_status IS 'status after.';
COMMENT ON COLUMN nugen.rollup_status_changes.from_deployment_status IS 'deployment_status before.';
COMMENT ON COLUMN nugen.rollup_status_changes.to_deployment_status IS 'deployment_status after.';
COMMENT ON COLUMN nugen.rollup_status_changes.day IS 'UTC date of changed_at (snapshot_date).';

COMMENT ON TABLE nugen.rollup_models_current IS 'Rollup behind models_latest, kept exact at load time. Grain: one row per (account_id, model_key): its last snapshot''s fields and first/last seen.';
COMMENT ON COLUMN nugen.rollup_models_current.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.rollup_models_current.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.rollup_models_current.model_id IS 'The model''s id as the API reported it; changes when a model is deployed ("...-deployed").';
COMMENT ON COLUMN nugen.rollup_models_current.alignment_id IS 'The alignment project reference (API field alignment_id); may be null.';
COMMENT ON COLUMN nugen.rollup_models_current.name IS 'Model name as reported by the API (free text).';
COMMENT ON COLUMN nugen.rollup_models_current.base_model IS 'Base model the alignment was trained on.';
COMMENT ON COLUMN nugen.rollup_models_current.alignment_project IS 'Alignment project name.';
COMMENT ON COLUMN nugen.rollup_models_current.created_date IS 'When the model was created (UTC).';
COMMENT ON COLUMN nugen.rollup_models_current.status IS 'Model status as reported (e.g. DEPLOYED, READY, FAILED; the vendor also sends UNDEPLOYED, EVALUATED).';
COMMENT ON COLUMN nugen.rollup_models_current.deployment_status IS 'Deployment status as reported (DEPLOYED, DEPLOYING, UNDEPLOYING, READY, FAILED, PROCESSING, UNDEPLOYED); may be null.';
COMMENT ON COLUMN nugen.rollup_models_current.endpoint IS 'Inference endpoint URL; empty string when undeployed.';
COMMENT ON COLUMN nugen.rollup_models_current.creator IS 'Creator as reported (an e-mail address).';
COMMENT ON COLUMN nugen.rollup_models_current.usage_count IS 'Cumulative inference calls as reported (a counter that can reset).';
COMMENT ON COLUMN nugen.rollup_models_current.last_used IS 'Last inference call (UTC); null if never used.';
COMMENT ON COLUMN nugen.rollup_models_current.downloadable IS 'Whether the model can be downloaded.';
COMMENT ON COLUMN nugen.rollup_models_current.conversation_saving_enabled IS 'Whether conversation saving is on.';
COMMENT ON COLUMN nugen.rollup_models_current.accuracy IS 'Canonical accuracy, 0..1: performance_metrics.accuracy, else accuracy_after, else evaluation_data metrics.';
COMMENT ON COLUMN nugen.rollup_models_current.uncertainty IS 'Canonical uncertainty, 0..1: performance_metrics.uncertainty, else uncertainty_after, else evaluation_data.metrics.uncertainty.';
COMMENT ON COLUMN nugen.rollup_models_current.domain_violations IS 'Canonical domain violations (count): plain, else _after, else evaluation_data.metrics.';
COMMENT ON COLUMN nugen.rollup_models_current.average_response_time IS 'performance_metrics.average_response_time, in seconds.';
COMMENT ON COLUMN nugen.rollup_models_current.record_count IS 'Records of this model_key in the snapshot (usually 1; usage_count sums them).';
COMMENT ON COLUMN nugen.rollup_models_current.first_seen_at IS 'First slot the model_key was seen in.';
COMMENT ON COLUMN nugen.rollup_models_current.last_seen_at IS 'Last slot the model_key was seen in.';

COMMENT ON TABLE nugen.rollup_account_health IS 'Rollup behind account_health, kept exact at load time. Grain: one row per account_id seen in account_runs.';
COMMENT ON COLUMN nugen.rollup_account_health.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.rollup_account_health.last_success_at IS 'Latest slot with outcome ok or empty (null if never).';
COMMENT ON COLUMN nugen.rollup_account_health.last_outcome IS 'Outcome of the latest recorded slot.';
COMMENT ON COLUMN nugen.rollup_account_health.consecutive_failures IS 'Runs after last_success_at (all if never) that failed or auth_failed.';
COMMENT ON COLUMN nugen.rollup_account_health.last_run_at IS 'Latest recorded slot.';

-- The views were dropped and created again: their comments with them.
COMMENT ON VIEW nugen.account_health IS 'One row per account seen in account_runs: last success, last outcome and failures since.';
COMMENT ON COLUMN nugen.account_health.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.account_health.last_success_at IS 'Latest slot with outcome ok or empty (null if never).';
COMMENT ON COLUMN nugen.account_health.last_outcome IS 'Outcome of the latest recorded slot.';
COMMENT ON COLUMN nugen.account_health.consecutive_failures IS 'Runs after last_success_at (all if never) that failed or auth_failed.';
COMMENT ON COLUMN nugen.account_health.last_run_at IS 'Latest recorded slot.';
COMMENT ON VIEW nugen.model_accuracy_daily IS 'One row per (account_id, model_key, UTC day): metrics of the day''s last snapshot.';
COMMENT ON COLUMN nugen.model_accuracy_daily.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.model_accuracy_daily.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.model_accuracy_daily.day IS 'UTC date (snapshot_date).';
COMMENT ON COLUMN nugen.model_accuracy_daily.accuracy IS 'Canonical accuracy, 0..1: performance_metrics.accuracy, else accuracy_after, else evaluation_data metrics.';
COMMENT ON COLUMN nugen.model_accuracy_daily.uncertainty IS 'Canonical uncertainty, 0..1: performance_metrics.uncertainty, else uncertainty_after, else evaluation_data.metrics.uncertainty.';
COMMENT ON COLUMN nugen.model_accuracy_daily.domain_violations IS 'Canonical domain violations (count): plain, else _after, else evaluation_data.metrics.';
COMMENT ON VIEW nugen.model_status_changes IS 'One row per (account_id, model_key, changed_at): a snapshot whose status or deployment_status differs from the previous observation of the model_key.';
COMMENT ON COLUMN nugen.model_status_changes.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.model_status_changes.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.model_status_changes.changed_at IS 'Slot in which the change was first observed.';
COMMENT ON COLUMN nugen.model_status_changes.from_status IS 'status before.';
COMMENT ON COLUMN nugen.model_status_changes.to_status IS 'status after.';
COMMENT ON COLUMN nugen.model_status_changes.from_deployment_status IS 'deployment_status before.';
COMMENT ON COLUMN nugen.model_status_changes.to_deployment_status IS 'deployment_status after.';
COMMENT ON VIEW nugen.model_usage_daily IS 'One row per (account_id, model_key, UTC day) with observations.';
COMMENT ON COLUMN nugen.model_usage_daily.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.model_usage_daily.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.model_usage_daily.day IS 'UTC date (snapshot_date).';
COMMENT ON COLUMN nugen.model_usage_daily.usage_count IS 'usage_count at the day''s last snapshot.';
COMMENT ON COLUMN nugen.model_usage_daily.usage_delta IS 'Inference calls during the day: sum over consecutive observations (the previous may be on an earlier day) of cur - prev, where a drop (counter reset) counts as cur. NULL for a model''s first observation or an unknown count.';
COMMENT ON VIEW nugen.models_latest IS 'One row per (account_id, model_key): the fields of its last snapshot, first/last seen, and whether it is still present.';
COMMENT ON COLUMN nugen.models_latest.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.models_latest.model_key IS 'Stable series key: coalesce(alignment_id, id). A deploy changes id but not alignment_id, so trends group by model_key.';
COMMENT ON COLUMN nugen.models_latest.model_id IS 'The model''s id as the API reported it; changes when a model is deployed ("...-deployed").';
COMMENT ON COLUMN nugen.models_latest.alignment_id IS 'The alignment project reference (API field alignment_id); may be null.';
COMMENT ON COLUMN nugen.models_latest.name IS 'Model name as reported by the API (free text).';
COMMENT ON COLUMN nugen.models_latest.base_model IS 'Base model the alignment was trained on.';
COMMENT ON COLUMN nugen.models_latest.alignment_project IS 'Alignment project name.';
COMMENT ON COLUMN nugen.models_latest.created_date IS 'When the model was created (UTC).';
COMMENT ON COLUMN nugen.models_latest.status IS 'Model status as reported (e.g. DEPLOYED, READY, FAILED; the vendor also sends UNDEPLOYED, EVALUATED).';
COMMENT ON COLUMN nugen.models_latest.deployment_status IS 'Deployment status as reported (DEPLOYED, DEPLOYING, UNDEPLOYING, READY, FAILED, PROCESSING, UNDEPLOYED); may be null.';
COMMENT ON COLUMN nugen.models_latest.endpoint IS 'Inference endpoint URL; empty string when undeployed.';
COMMENT ON COLUMN nugen.models_latest.creator IS 'Creator as reported (an e-mail address).';
COMMENT ON COLUMN nugen.models_latest.usage_count IS 'Cumulative inference calls as reported (a counter that can reset).';
COMMENT ON COLUMN nugen.models_latest.last_used IS 'Last inference call (UTC); null if never used.';
COMMENT ON COLUMN nugen.models_latest.downloadable IS 'Whether the model can be downloaded.';
COMMENT ON COLUMN nugen.models_latest.conversation_saving_enabled IS 'Whether conversation saving is on.';
COMMENT ON COLUMN nugen.models_latest.accuracy IS 'Canonical accuracy, 0..1: performance_metrics.accuracy, else accuracy_after, else evaluation_data metrics.';
COMMENT ON COLUMN nugen.models_latest.uncertainty IS 'Canonical uncertainty, 0..1: performance_metrics.uncertainty, else uncertainty_after, else evaluation_data.metrics.uncertainty.';
COMMENT ON COLUMN nugen.models_latest.domain_violations IS 'Canonical domain violations (count): plain, else _after, else evaluation_data.metrics.';
COMMENT ON COLUMN nugen.models_latest.average_response_time IS 'performance_metrics.average_response_time, in seconds.';
COMMENT ON COLUMN nugen.models_latest.record_count IS 'Records of this model_key in the snapshot (usually 1; usage_count sums them).';
COMMENT ON COLUMN nugen.models_latest.first_seen_at IS 'First slot the model_key was seen in.';
COMMENT ON COLUMN nugen.models_latest.last_seen_at IS 'Last slot the model_key was seen in.';
COMMENT ON COLUMN nugen.models_latest.is_present IS 'Seen in the account''s latest successful (ok/empty) slot. A failed run retires nothing.';
