"""Scenario 4, flat cost: one hourly slot upserted into a warehouse already holding a long history of
``model_snapshots`` rows versus into an empty one, on both engines.

The history is made with one set-based INSERT ... SELECT over a generated series (not through the
pipeline): the same accounts as the measured slot, 20 models each, one row per model per past hour,
plus the matching ``account_runs`` rows. Slots are loaded alternately into the empty and the full
warehouse, a new hour each time, after one warm-up slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from bench.common import FETCH_OFFSET, SEED, T0, Context, median, row
from bench.sizes import Sizes
from nugen_etl.records import RawAnswer, SlotLoad
from nugen_etl.simulator import SimulatorState
from nugen_etl.transform import answer_to_load
from nugen_etl.warehouse import Warehouse, open_warehouse
from tests.pg_scratch import scratch_pg_database

_HISTORY_COLUMNS = (
    "account_id, model_id, snapshot_at, snapshot_date, fetched_at, model_key, alignment_id, "
    "name, base_model, status, deployment_status, usage_count, accuracy, uncertainty, "
    "domain_violations"
)


def _duckdb_history(rows: int, accounts: int, models: int) -> list[str]:
    per_slot = accounts * models
    at = f"(TIMESTAMPTZ '{T0.isoformat()}' - to_hours(CAST(1 + i // {per_slot} AS BIGINT)))"
    acct = f"'acct-' || lpad(CAST(1 + (i // {models}) % {accounts} AS VARCHAR), 4, '0')"
    model = f"'hist-model-' || CAST(i % {models} AS VARCHAR)"
    run_at = f"(TIMESTAMPTZ '{T0.isoformat()}' - to_hours(CAST(1 + i // {accounts} AS BIGINT)))"
    run_acct = f"'acct-' || lpad(CAST(1 + i % {accounts} AS VARCHAR), 4, '0')"
    return [
        f"INSERT INTO nugen.model_snapshots ({_HISTORY_COLUMNS}) SELECT {acct}, {model}, {at}, "
        f"CAST({at} AS DATE), {at} + INTERVAL 3 MINUTE, {model}, {model}, 'history', 'nugen-flash-instruct', "
        f"'DEPLOYED', 'DEPLOYED', i % 1000, 0.9, 0.08, 3 FROM range({rows}) AS t(i)",
        f"INSERT INTO nugen.account_runs (account_id, snapshot_at, outcome, http_status, model_count, "
        f"quarantined_count, coerced_count, attempts, fetched_at) SELECT {run_acct}, {run_at}, 'ok', 200, "
        f"{models}, 0, 0, 1, {run_at} + INTERVAL 3 MINUTE FROM range({rows // models}) AS t(i)",
        "CHECKPOINT",
    ]


def _pg_history(rows: int, accounts: int, models: int) -> list[str]:
    per_slot = accounts * models
    at = f"(timestamptz '{T0.isoformat()}' - make_interval(hours => (1 + i / {per_slot})::int))"
    acct = f"'acct-' || lpad((1 + (i / {models}) % {accounts})::text, 4, '0')"
    model = f"'hist-model-' || (i % {models})::text"
    run_at = f"(timestamptz '{T0.isoformat()}' - make_interval(hours => (1 + i / {accounts})::int))"
    run_acct = f"'acct-' || lpad((1 + i % {accounts})::text, 4, '0')"
    return [
        f"INSERT INTO nugen.model_snapshots ({_HISTORY_COLUMNS}) SELECT {acct}, {model}, {at}, "
        f"({at} AT TIME ZONE 'UTC')::date, {at} + interval '3 minutes', {model}, {model}, 'history', "
        f"'nugen-flash-instruct', 'DEPLOYED', 'DEPLOYED', i % 1000, 0.9, 0.08, 3 "
        f"FROM generate_series(0::bigint, {rows - 1}) AS i",
        f"INSERT INTO nugen.account_runs (account_id, snapshot_at, outcome, http_status, model_count, "
        f"quarantined_count, coerced_count, attempts, fetched_at) SELECT {run_acct}, {run_at}, 'ok', 200, "
        f"{models}, 0, 0, 1, {run_at} + interval '3 minutes' FROM generate_series(0::bigint, {rows // models - 1}) AS i",
        "VACUUM ANALYZE nugen.model_snapshots",
        "VACUUM ANALYZE nugen.account_runs",
    ]


def _slot_loads(state: SimulatorState, accounts: list[str], hour: int) -> list[SlotLoad]:
    slot = T0 + timedelta(hours=hour)
    fetched = slot + FETCH_OFFSET
    return [
        answer_to_load(RawAnswer(account_id=a, snapshot_at=slot, fetched_at=fetched, http_status=200, body=state.body_at(a, fetched)))
        for a in accounts
    ]


def alternate_slots(
    state: SimulatorState, accounts: list[str], reps: int, empty: Warehouse, full: Warehouse
) -> tuple[list[float], list[float]]:
    """Load ``reps`` hourly slots into ``empty`` and ``full`` alternately, after one warm-up slot:
    the seconds each took, per warehouse."""
    t_empty, t_full = [], []
    for rep in range(reps + 1):
        loads = _slot_loads(state, accounts, rep)
        te, tf = _timed_load(empty, loads), _timed_load(full, loads)
        if rep:  # the first slot warms both up
            t_empty.append(te)
            t_full.append(tf)
    return t_empty, t_full


def _timed_load(wh: Warehouse, loads: list[SlotLoad], batch: int = 200) -> float:
    started = time.perf_counter()
    for i in range(0, len(loads), batch):
        wh.load(loads[i : i + batch])
    return time.perf_counter() - started


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    n, m, rows_hist = sizes.fc_accounts, sizes.fc_models, sizes.fc_history_rows
    state = SimulatorState(SEED, n + 1, models=m, start=T0)
    accounts = state.account_ids[:n]
    out: dict[str, Any] = {"accounts": n, "models": m, "history_rows": rows_hist, "engines": {}}
    rows = []
    engines: list[tuple[str, Callable[[str], Any]]] = [("duckdb", lambda tag: _duckdb(ctx, tag))]
    if ctx.pg_url:
        engines.append(("postgresql", lambda tag: _postgres(ctx, tag)))
    else:
        ctx.notes.append("flat cost: PostgreSQL skipped (no PostgreSQL URL)")
    for engine, opener in engines:
        with opener("empty") as empty, opener("full") as full:
            empty.migrate()
            full.migrate()
            history = _duckdb_history if engine == "duckdb" else _pg_history
            started = time.perf_counter()
            for sql in history(rows_hist, n, m):
                full.fetch_all(sql)
            fill_s = time.perf_counter() - started
            ((count,),) = full.fetch_all("SELECT count(*) FROM nugen.model_snapshots")
            ctx.log(f"  flat cost {engine}: {count:,} history rows in {fill_s:.1f} s")
            t_empty, t_full = alternate_slots(state, accounts, sizes.fc_reps, empty, full)
            e, f = median(t_empty), median(t_full)
            ratio = f / e
            ctx.log(f"  flat cost {engine}: empty {e * 1000:.0f} ms, full {f * 1000:.0f} ms, ratio {ratio:.2f}")
            out["engines"][engine] = {"history_fill_s": fill_s, "history_rows": count, "empty_s": t_empty, "full_s": t_full, "ratio": ratio}
            rows.append(
                row(
                    "4 flat cost",
                    f"{engine}: slot into {count:,} rows vs empty ({n} x {m})",
                    round(ratio, 2),
                    "x",
                    target="<= 1.3x",
                    met=ratio <= 1.3,
                    note=f"{f * 1000:.0f} ms vs {e * 1000:.0f} ms",
                )
            )
    out["rows"] = rows
    return out


@contextmanager
def _duckdb(ctx: Context, tag: str) -> Iterator[Warehouse]:
    path = ctx.work / f"flat-{tag}.duckdb"
    path.unlink(missing_ok=True)
    wh = open_warehouse(f"duckdb:///{path}")
    try:
        yield wh
    finally:
        wh.close()
        path.unlink(missing_ok=True)


@contextmanager
def _postgres(ctx: Context, tag: str) -> Iterator[Warehouse]:
    assert ctx.pg_url is not None
    with scratch_pg_database(ctx.pg_url, f"nugen_bench_flat_{tag}") as url:
        wh = open_warehouse(url)
        try:
            yield wh
        finally:
            wh.close()
