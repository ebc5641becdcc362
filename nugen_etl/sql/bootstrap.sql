-- Run before every migrate(): the schema and the ledger of applied migrations.
-- Both statements are idempotent; the engine runs them under its migration lock.
CREATE SCHEMA IF NOT EXISTS nugen;

CREATE TABLE IF NOT EXISTS nugen.schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL
);
