"""nugen_lake_maintenance: compact each closed day of the Delta lake once, then vacuum old files.

Daily. A day closes two slots after its end; each closed day that changed since its last compaction
is rewritten into few files z-ordered by (account_id, model_key, snapshot_at), then files that no
version within ``storage.vacuum_retention_hours`` (default 7 days) needs are deleted. The same code
as ``nugen-etl compact``. Only the standard library and ``airflow.sdk`` are imported here.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

SCHEDULE = os.environ.get("NUGEN_COMPACT_SCHEDULE") or "30 3 * * *"


@dag(
    dag_id="nugen_lake_maintenance",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["nugen"],
    doc_md=__doc__,
)
def nugen_lake_maintenance():
    @task
    def compact_lake() -> dict:
        from airflow.sdk import get_current_context

        from nugen_etl.airflow import tasks

        return tasks.compact_lake(get_current_context())

    compact_lake()


nugen_lake_maintenance()
