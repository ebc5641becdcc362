-- BI views. One definition for every engine: only SQL that DuckDB and PostgreSQL both accept.
-- "day" is the stored snapshot_date (the UTC date of snapshot_at).
-- Every trend groups by model_key = coalesce(alignment_id, id), so a deploy (id change) keeps its series.

-- Grain: one row per (account_id, model_key, snapshot_at). Internal building block.
-- usage_count sums every record sharing the model_key in that snapshot (record_count says how many);
-- the other fields come from one deterministic record: the greatest model_id
-- (a deployed "...-deployed" id sorts after the undeployed one); last_used is the latest of them.
CREATE VIEW nugen.model_key_snapshots AS
SELECT account_id, model_key, snapshot_at, snapshot_date, fetched_at, model_id, alignment_id,
       name, base_model, alignment_project, created_date, status, deployment_status, endpoint,
       creator, usage_count, last_used, downloadable, conversation_saving_enabled,
       accuracy, uncertainty, domain_violations, average_response_time,
       eval_id, eval_status, eval_completed_at, record_count
FROM (
    SELECT s.account_id, s.model_key, s.snapshot_at, s.snapshot_date, s.fetched_at, s.model_id,
           s.alignment_id, s.name, s.base_model, s.alignment_project, s.created_date, s.status,
           s.deployment_status, s.endpoint, s.creator,
           SUM(s.usage_count) OVER k AS usage_count,
           MAX(s.last_used) OVER k AS last_used,
           s.downloadable, s.conversation_saving_enabled,
           s.accuracy, s.uncertainty, s.domain_violations, s.average_response_time,
           s.eval_id, s.eval_status, s.eval_completed_at,
           COUNT(*) OVER k AS record_count,
           ROW_NUMBER() OVER (PARTITION BY s.account_id, s.model_key, s.snapshot_at
                              ORDER BY s.model_id DESC) AS pick
    FROM nugen.model_snapshots AS s
    WINDOW k AS (PARTITION BY s.account_id, s.model_key, s.snapshot_at)
) AS r
WHERE pick = 1;

-- Grain: one row per (account_id, model_key): the fields of its last snapshot,
-- first_seen_at / last_seen_at over all snapshots, and is_present = seen in the account's
-- latest successful (ok/empty) snapshot. A failed run is not a success, so it retires nothing.
CREATE VIEW nugen.models_latest AS
WITH seen AS (
    SELECT account_id, model_key, MIN(snapshot_at) AS first_seen_at, MAX(snapshot_at) AS last_seen_at
    FROM nugen.model_snapshots
    GROUP BY account_id, model_key
), last_success AS (
    SELECT account_id, MAX(snapshot_at) AS snapshot_at
    FROM nugen.account_runs
    WHERE outcome IN ('ok', 'empty')
    GROUP BY account_id
)
SELECT k.account_id, k.model_key, k.model_id, k.alignment_id, k.name, k.base_model,
       k.alignment_project, k.created_date, k.status, k.deployment_status, k.endpoint, k.creator,
       k.usage_count, k.last_used, k.downloadable, k.conversation_saving_enabled,
       k.accuracy, k.uncertainty, k.domain_violations, k.average_response_time, k.record_count,
       seen.first_seen_at, seen.last_seen_at,
       COALESCE(seen.last_seen_at = ls.snapshot_at, FALSE) AS is_present
FROM seen
JOIN nugen.model_key_snapshots AS k
  ON k.account_id = seen.account_id AND k.model_key = seen.model_key
 AND k.snapshot_at = seen.last_seen_at
LEFT JOIN last_success AS ls ON ls.account_id = seen.account_id;

-- Grain: one row per (account_id, model_key, day).
-- usage_count: the value at the day's last snapshot.
-- usage_delta: sum over the day's consecutive observation pairs (the previous one may be on an
-- earlier day) of cur - prev, where a drop (counter reset) counts as cur; NULL when the day's
-- only observation is the model's first, or when a usage_count of the pair is unknown.
CREATE VIEW nugen.model_usage_daily AS
SELECT account_id, model_key, day,
       MAX(CASE WHEN last_of_day = 1 THEN usage_count END) AS usage_count,
       SUM(CASE WHEN usage_count < prev_usage THEN usage_count
                ELSE usage_count - prev_usage END) AS usage_delta
FROM (
    SELECT account_id, model_key, snapshot_date AS day, usage_count,
           LAG(usage_count) OVER (PARTITION BY account_id, model_key ORDER BY snapshot_at) AS prev_usage,
           ROW_NUMBER() OVER (PARTITION BY account_id, model_key, snapshot_date
                              ORDER BY snapshot_at DESC) AS last_of_day
    FROM nugen.model_key_snapshots
) AS o
GROUP BY account_id, model_key, day;

-- Grain: one row per (account_id, model_key, day): the metrics of the day's last snapshot.
CREATE VIEW nugen.model_accuracy_daily AS
SELECT account_id, model_key, day, accuracy, uncertainty, domain_violations
FROM (
    SELECT account_id, model_key, snapshot_date AS day, accuracy, uncertainty, domain_violations,
           ROW_NUMBER() OVER (PARTITION BY account_id, model_key, snapshot_date
                              ORDER BY snapshot_at DESC) AS last_of_day
    FROM nugen.model_key_snapshots
) AS o
WHERE last_of_day = 1;

-- Grain: one row per (account_id, model_key, changed_at): a snapshot whose status or
-- deployment_status differs from the previous observation of the model_key (never the first).
CREATE VIEW nugen.model_status_changes AS
SELECT account_id, model_key, snapshot_at AS changed_at,
       prev_status AS from_status, status AS to_status,
       prev_deployment_status AS from_deployment_status, deployment_status AS to_deployment_status
FROM (
    SELECT account_id, model_key, snapshot_at, status, deployment_status,
           LAG(status) OVER w AS prev_status,
           LAG(deployment_status) OVER w AS prev_deployment_status,
           ROW_NUMBER() OVER w AS observation
    FROM nugen.model_key_snapshots
    WINDOW w AS (PARTITION BY account_id, model_key ORDER BY snapshot_at)
) AS o
WHERE observation > 1
  AND (status IS DISTINCT FROM prev_status
       OR deployment_status IS DISTINCT FROM prev_deployment_status);

-- Grain: one row per account_id seen in account_runs.
-- last_success_at: latest slot with outcome ok/empty (NULL if never);
-- last_outcome: outcome of the latest recorded slot (last_run_at);
-- consecutive_failures: runs after last_success_at (all runs if never) that failed or auth_failed.
CREATE VIEW nugen.account_health AS
WITH summary AS (
    SELECT account_id,
           MAX(CASE WHEN outcome IN ('ok', 'empty') THEN snapshot_at END) AS last_success_at,
           MAX(snapshot_at) AS last_run_at
    FROM nugen.account_runs
    GROUP BY account_id
)
SELECT s.account_id, s.last_success_at, latest.outcome AS last_outcome,
       (SELECT COUNT(*) FROM nugen.account_runs AS f
         WHERE f.account_id = s.account_id
           AND f.outcome IN ('failed', 'auth_failed')
           AND (s.last_success_at IS NULL OR f.snapshot_at > s.last_success_at)
       ) AS consecutive_failures,
       s.last_run_at
FROM summary AS s
JOIN nugen.account_runs AS latest
  ON latest.account_id = s.account_id AND latest.snapshot_at = s.last_run_at;
