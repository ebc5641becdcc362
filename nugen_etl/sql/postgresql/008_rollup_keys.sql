-- The rollups' keys, and the indexes their maintenance and the dashboard queries use
-- (tests/test_rollups.py checks the plans with EXPLAIN).
ALTER TABLE nugen.rollup_model_daily ADD PRIMARY KEY (account_id, model_key, day);
-- All-account trends over recent days: "WHERE day >= ...".
CREATE INDEX rollup_model_daily_day_idx ON nugen.rollup_model_daily (day);
ALTER TABLE nugen.rollup_status_changes ADD PRIMARY KEY (account_id, model_key, changed_at);
-- Recent changes: "WHERE changed_at >= ...".
CREATE INDEX rollup_status_changes_changed_at_idx ON nugen.rollup_status_changes (changed_at);
ALTER TABLE nugen.rollup_models_current ADD PRIMARY KEY (account_id, model_key);
ALTER TABLE nugen.rollup_account_health ADD PRIMARY KEY (account_id);
