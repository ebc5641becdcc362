-- Version 006 changes PostgreSQL only (../006_snapshot_key_leads_with_the_slot.sql reorders its
-- model_snapshots key); DuckDB's model_snapshots keeps no key (003). This records the version.
SELECT 1;
