"""nugen_aligned_models_rebuild: rebuild the Delta lake and the warehouse for [from, to] from the raw archive.

Manual only; the same code as ``nugen-etl backfill``: per slot the newest successful archived
answer wins, and the API is never called. ``accounts`` empty means every configured account.
Only the standard library and ``airflow.sdk`` are imported here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, task


@dag(
    dag_id="nugen_aligned_models_rebuild",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "from": Param(type="string", format="date", description="first UTC day, YYYY-MM-DD"),
        "to": Param(type="string", format="date", description="last UTC day (inclusive), YYYY-MM-DD"),
        "accounts": Param([], type="array", items={"type": "string"}, description="account ids; empty = every configured account"),
    },
    default_args={"retries": 1},
    tags=["nugen"],
    doc_md=__doc__,
)
def nugen_aligned_models_rebuild():
    @task
    def rebuild(params: dict | None = None) -> dict:
        from airflow.sdk import get_current_context

        from nugen_etl.airflow import tasks

        return tasks.rebuild(params or {}, get_current_context())

    rebuild()


nugen_aligned_models_rebuild()
