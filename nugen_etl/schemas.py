"""Declared Arrow schemas and primary keys of every table nugen-etl writes (Delta lake and warehouse).

The warehouse DDL in ``nugen_etl/sql/`` mirrors these; ``tests/test_schemas.py`` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    primary_key: tuple[str, ...]


MODEL_SNAPSHOTS = TableSpec(
    "model_snapshots",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("model_id", pa.string()),
            ("snapshot_at", TS),
            ("snapshot_date", pa.date32()),
            ("fetched_at", TS),
            ("model_key", pa.string()),
            ("alignment_id", pa.string()),
            ("name", pa.string()),
            ("base_model", pa.string()),
            ("alignment_project", pa.string()),
            ("created_date", TS),
            ("status", pa.string()),
            ("deployment_status", pa.string()),
            ("endpoint", pa.string()),
            ("creator", pa.string()),
            ("usage_count", pa.int64()),
            ("last_used", TS),
            ("downloadable", pa.bool_()),
            ("conversation_saving_enabled", pa.bool_()),
            # canonical metrics: plain -> _after -> evaluation_data metrics
            ("accuracy", pa.float64()),
            ("uncertainty", pa.float64()),
            ("domain_violations", pa.int64()),
            ("average_response_time", pa.float64()),
            # performance_metrics as documented (both shapes)
            ("pm_accuracy", pa.float64()),
            ("pm_uncertainty", pa.float64()),
            ("pm_domain_violations", pa.int64()),
            ("pm_average_response_time", pa.float64()),
            ("pm_accuracy_before", pa.float64()),
            ("pm_accuracy_after", pa.float64()),
            ("pm_uncertainty_before", pa.float64()),
            ("pm_uncertainty_after", pa.float64()),
            ("pm_domain_violations_before", pa.int64()),
            ("pm_domain_violations_after", pa.int64()),
            # evaluation_data, flat and nested shapes
            ("eval_id", pa.string()),
            ("eval_status", pa.string()),
            ("eval_method", pa.string()),
            ("eval_created_at", TS),
            ("eval_completed_at", TS),
            ("eval_raw_answers_count", pa.int64()),
            ("eval_total_questions", pa.int64()),
            ("eval_accuracy", pa.float64()),
            ("eval_metrics_accuracy", pa.float64()),
            ("eval_metrics_uncertainty", pa.float64()),
            ("eval_metrics_domain_violations", pa.int64()),
            ("eval_metrics_overall_score", pa.float64()),
            # lossless remainder
            ("extra_json", pa.string()),
            ("evaluation_data_json", pa.string()),
            ("quality_issues", pa.string()),
        ]
    ),
    ("account_id", "snapshot_at", "model_id"),  # the slot first: the slot replace uses the key
)

MODEL_METRICS = TableSpec(
    "model_metrics",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("model_id", pa.string()),
            ("snapshot_at", TS),
            ("metric", pa.string()),
            ("snapshot_date", pa.date32()),
            ("model_key", pa.string()),
            ("value", pa.float64()),
        ]
    ),
    ("account_id", "model_id", "snapshot_at", "metric"),
)

EVALUATIONS = TableSpec(
    "evaluations",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("evaluation_id", pa.string()),
            ("model_id", pa.string()),
            ("model_key", pa.string()),
            ("status", pa.string()),
            ("method", pa.string()),
            ("created_at", TS),
            ("completed_at", TS),
            ("raw_answers_count", pa.int64()),
            ("total_questions", pa.int64()),
            ("accuracy", pa.float64()),
            ("uncertainty", pa.float64()),
            ("domain_violations", pa.int64()),
            ("overall_score", pa.float64()),
            ("first_seen_at", TS),
            ("last_seen_at", TS),
            ("evaluation_data_json", pa.string()),
        ]
    ),
    ("account_id", "evaluation_id"),
)

QUARANTINE = TableSpec(
    "quarantined_records",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("snapshot_at", TS),
            ("position", pa.int32()),
            ("reason", pa.string()),
            ("raw_json", pa.string()),
        ]
    ),
    ("account_id", "snapshot_at", "position"),
)

ACCOUNT_RUNS = TableSpec(
    "account_runs",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("snapshot_at", TS),
            ("outcome", pa.string()),
            ("http_status", pa.int32()),
            ("model_count", pa.int32()),
            ("quarantined_count", pa.int32()),
            ("coerced_count", pa.int32()),
            ("attempts", pa.int32()),
            ("fetched_at", TS),
            ("error", pa.string()),
        ]
    ),
    ("account_id", "snapshot_at"),
)

# account_runs as the lake keeps it: partitioned by day like the other lake tables.
LAKE_ACCOUNT_RUNS = TableSpec(
    "account_runs",
    pa.schema(
        [
            ACCOUNT_RUNS.schema.field("account_id"),
            ACCOUNT_RUNS.schema.field("snapshot_at"),
            ("snapshot_date", pa.date32()),
            *[f for f in ACCOUNT_RUNS.schema if f.name not in ("account_id", "snapshot_at")],
        ]
    ),
    ACCOUNT_RUNS.primary_key,
)

# model_metrics as the warehouse stores it: one row per model snapshot with its metrics as two parallel
# lists (path i has value i). The warehouse's ``nugen.model_metrics`` is a view that unnests them into
# MODEL_METRICS' long shape: ~7 long rows per snapshot made the metrics ~85% of a load's rows and of
# the warehouse's size. The key leads with the slot, so the slot replace uses it (PostgreSQL).
MODEL_METRIC_LISTS = TableSpec(
    "model_metric_lists",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("snapshot_at", TS),
            ("model_id", pa.string()),
            ("snapshot_date", pa.date32()),
            ("model_key", pa.string()),
            ("metric_names", pa.list_(pa.string())),
            ("metric_values", pa.list_(pa.float64())),
        ]
    ),
    ("account_id", "snapshot_at", "model_id"),
)

# What readers query in the warehouse (there, model_metrics is a view over MODEL_METRIC_LISTS).
ALL_TABLES = (MODEL_SNAPSHOTS, MODEL_METRICS, EVALUATIONS, QUARANTINE, ACCOUNT_RUNS)
# Tables whose rows belong to one (account, slot) and are replaced as a whole on a rerun.
SLOT_TABLES = (MODEL_SNAPSHOTS, MODEL_METRICS, QUARANTINE)
