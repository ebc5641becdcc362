"""How big each scenario is: the issue's sizes (``FULL``), a development run (``QUICK``) and ``TINY`` for
the harness test."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Sizes:
    name: str
    reps: int  # repetitions of each timed measurement (the median is reported)
    # 1 fan-out
    fanout_accounts: int = 1000
    fanout_models: int = 50
    fanout_latency_ms: float = 100.0
    fanout_concurrency: int = 32
    # 2 throughput
    tp_accounts: int = 1000
    tp_models: int = 200
    tp_baseline_accounts: int = 5  # the row-wise baseline runs at a few hundred rows/s: measured on a sample
    # 3 rebuild: the size, 30 days of hourly slots (1.44 M rows, 72,000 archived answers);
    # scenario 7 scans the lake this rebuild wrote.
    rb_days: int = 30
    rb_accounts: int = 100
    rb_models: int = 20
    # 4 flat cost
    fc_history_rows: int = 10_000_000
    fc_accounts: int = 100
    fc_models: int = 20
    fc_reps: int = 7  # hourly slots loaded into each warehouse (after one warm-up slot)
    # 5 memory
    mem_small: int = 10
    mem_large: int = 2000
    mem_models: int = 50
    # 6 DAG parse
    dag_reps: int = 5
    # 7 lake: a live day (hourly slots) written in the batches a live run makes, then compacted
    lake_accounts: int = 100
    lake_models: int = 50
    lake_slots: int = 24
    lake_batch: int = 100  # accounts per batch: the default warehouse.batch_accounts
    # 8 BI: 100 accounts x 20 models x 10,000 hourly slots (~14 months) = ~20 M model_snapshots rows
    bi_accounts: int = 100
    bi_models: int = 20
    bi_hours: int = 10_000
    bi_reps: int = 5  # timed runs of each dashboard query over the rollups, after a warm-up
    bi_ref_reps: int = 1  # runs over the pre-rollup views (a minute each at 20 M rows on PostgreSQL)
    bi_slot_reps: int = 7  # hourly slots loaded into each warehouse (after one warm-up slot)
    # 9 peer: the same job by nugen-etl and by a dlt pipeline
    peer_accounts: int = 1000
    peer_models: int = 200


FULL = Sizes("full", reps=3)
QUICK = Sizes(
    "quick",
    reps=2,
    fanout_accounts=200,
    fanout_models=20,
    tp_accounts=100,
    tp_baseline_accounts=3,
    rb_days=2,
    rb_accounts=20,
    fc_history_rows=500_000,
    fc_reps=3,
    mem_large=300,
    dag_reps=2,
    bi_accounts=20,
    bi_models=10,
    bi_hours=2_000,
    bi_reps=3,
    bi_slot_reps=3,
    peer_accounts=100,
    peer_models=20,
)
TINY = replace(
    QUICK,
    name="tiny",
    reps=1,
    fanout_accounts=8,
    fanout_models=4,
    fanout_latency_ms=20,
    fanout_concurrency=4,
    tp_accounts=4,
    tp_models=6,
    tp_baseline_accounts=2,
    rb_days=1,
    rb_accounts=3,
    rb_models=4,
    fc_history_rows=5_000,
    fc_accounts=3,
    fc_models=4,
    fc_reps=1,
    mem_small=2,
    mem_large=6,
    mem_models=4,
    dag_reps=1,
    lake_accounts=6,
    lake_models=4,
    lake_slots=2,
    lake_batch=4,
    bi_accounts=4,
    bi_models=5,
    bi_hours=72,
    bi_reps=1,
    bi_slot_reps=1,
    peer_accounts=3,
    peer_models=4,
)
BY_NAME = {s.name: s for s in (FULL, QUICK, TINY)}
