"""nugen_aligned_models: snapshot every account's aligned models into the slot of each data interval.

plan -> snapshot_batch (mapped over batches of accounts, pool ``nugen_api``) -> publish -> verdict.
The slot is the run's data interval end; a run without one takes its logical date / run_after,
floored to the granularity. A slot older than ``NUGEN_LATENESS`` never calls the API: it is
replayed from the raw archive, or recorded ``not_observed``. Settings: see README, "Airflow and
docker-compose". Only the standard library and ``airflow.sdk`` are imported here; the tasks
import ``nugen_etl`` when they run.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task

SCHEDULE = os.environ.get("NUGEN_SCHEDULE") or "0 * * * *"
CATCHUP = (os.environ.get("NUGEN_CATCHUP") or "false").strip().lower() in ("1", "true", "yes", "on")
START = datetime.fromisoformat(os.environ.get("NUGEN_START_DATE") or "2026-01-01").replace(tzinfo=UTC)
RETRIES = int(os.environ.get("NUGEN_TASK_RETRIES") or "3")
RETRY_DELAY = timedelta(seconds=float(os.environ.get("NUGEN_RETRY_DELAY_S") or "60"))

SNAPSHOTS = Asset(name="nugen_model_snapshots", uri="nugen://warehouse/nugen/model_snapshots", group="nugen")
METRICS = Asset(name="nugen_model_metrics", uri="nugen://warehouse/nugen/model_metrics", group="nugen")


@dag(
    dag_id="nugen_aligned_models",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=START,
    catchup=CATCHUP,
    max_active_runs=1,
    default_args={
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    tags=["nugen"],
    doc_md=__doc__,
)
def nugen_aligned_models():
    @task
    def plan() -> list[list[str]]:
        from airflow.sdk import get_current_context

        from nugen_etl.airflow import tasks

        return tasks.plan(get_current_context())

    @task(pool="nugen_api")
    def snapshot_batch(accounts: list[str]) -> dict:
        from airflow.sdk import get_current_context

        from nugen_etl.airflow import tasks

        return tasks.snapshot_batch(accounts, get_current_context())

    @task(outlets=[SNAPSHOTS, METRICS], trigger_rule="all_done_min_one_success", retries=1)
    def publish() -> dict:
        from airflow.sdk import get_current_context

        from nugen_etl.airflow import tasks

        return tasks.publish(get_current_context())

    @task(trigger_rule="one_failed", retries=0)
    def verdict() -> None:
        """Runs only when a batch or publish failed, so the run is marked failed although publish ran."""
        raise RuntimeError(
            "some snapshot batches (or the data-quality checks) failed; the accounts that succeeded are written and published"
        )

    batches = snapshot_batch.expand(accounts=plan())
    published = publish()
    batches >> published
    [batches, published] >> verdict()


nugen_aligned_models()
