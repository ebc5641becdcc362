-- Loads a run archived and wrote to the lake but could not load into the warehouse (busy, down or
-- failing), as the pending-load journal under the storage root held them when the warehouse was last
-- reachable; account_health shows them.

-- Grain: one row per (account_id, snapshot_at) whose warehouse load is pending.
CREATE TABLE nugen.pending_loads (
    account_id  TEXT NOT NULL,
    snapshot_at TIMESTAMPTZ NOT NULL,
    since       TIMESTAMPTZ NOT NULL,
    reason      TEXT,
    PRIMARY KEY (account_id, snapshot_at)
);

DROP VIEW nugen.account_health;

-- Grain: one row per account_id seen in account_runs.
CREATE VIEW nugen.account_health AS
SELECT h.account_id, h.last_success_at, h.last_outcome, h.consecutive_failures, h.last_run_at,
       COALESCE(p.loads, 0) AS pending_loads, p.since AS pending_since
FROM nugen.rollup_account_health AS h
LEFT JOIN (SELECT account_id, COUNT(*) AS loads, MIN(since) AS since
           FROM nugen.pending_loads GROUP BY account_id) AS p ON p.account_id = h.account_id;

COMMENT ON TABLE nugen.pending_loads IS 'Slots archived and in the lake whose warehouse load is pending (the journal under the storage root, as of the last run that reached the warehouse). Grain: one row per (account_id, snapshot_at). `nugen-etl load-pending` loads them.';
COMMENT ON COLUMN nugen.pending_loads.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.pending_loads.snapshot_at IS 'The slot whose load is pending (UTC).';
COMMENT ON COLUMN nugen.pending_loads.since IS 'When the load was first deferred (UTC).';
COMMENT ON COLUMN nugen.pending_loads.reason IS 'Why it did not load, as last seen.';
COMMENT ON VIEW nugen.account_health IS 'One row per account seen in account_runs: last success, last outcome, failures since, and warehouse loads still pending.';
COMMENT ON COLUMN nugen.account_health.account_id IS 'Configured account id (nugen-etl config), not from the API.';
COMMENT ON COLUMN nugen.account_health.last_success_at IS 'Latest slot with outcome ok or empty (null if never).';
COMMENT ON COLUMN nugen.account_health.last_outcome IS 'Outcome of the latest recorded slot.';
COMMENT ON COLUMN nugen.account_health.consecutive_failures IS 'Runs after last_success_at (all if never) that failed or auth_failed.';
COMMENT ON COLUMN nugen.account_health.last_run_at IS 'Latest recorded slot.';
COMMENT ON COLUMN nugen.account_health.pending_loads IS 'Slots archived and in the lake but not yet loaded into the warehouse (see pending_loads); 0 when none.';
COMMENT ON COLUMN nugen.account_health.pending_since IS 'When the oldest pending load was first deferred (null when none).';
