"""Scenario 3, rebuild: ``backfill`` of the whole synthetic raw archive into an empty DuckDB and an empty
PostgreSQL database (each in a fresh process, for its peak memory), with the time split between the
replay, the Delta lake commits and the warehouse load.

The DuckDB rebuild's lake is kept in ``ctx.shared["rebuilt_lake"]`` for the lake scenario's scans.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.archive import ensure_archive
from bench.common import T0, Context, median, row, run_job
from bench.sizes import Sizes
from nugen_etl.classify import classify_answer
from nugen_etl.replay import replay_items
from nugen_etl.sinks.archive import list_archived_slots, read_raw_answer
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import RunSummary
from tests.pg_scratch import scratch_pg_database

TARGETS = {"duckdb": 50_000, "postgresql": 25_000}  # issue 15 (the Delta lake)
NEXT_TARGETS = {"duckdb": 150_000, "postgresql": 75_000}  # issue 18 (Arrow-native throughput), shown beside
FLOOR_REPEAT_ROWS = 200_000  # above this many rows the floors (read + parse, replay) are measured once


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    days, n, m = sizes.rb_days, sizes.rb_accounts, sizes.rb_models
    started = time.perf_counter()
    archive = ensure_archive(ctx.cache, days, n, m)
    gen_s = time.perf_counter() - started
    ctx.log(f"  raw archive ready in {gen_s:.1f} s: {archive}")
    results: dict[str, Any] = {"days": days, "accounts": n, "models": m, "archive": str(archive), "archive_ready_s": gen_s, "engines": {}}
    rows = []
    cores = os.cpu_count() or 1
    engines = ["duckdb"] + (["postgresql"] if ctx.pg_url else [])
    if not ctx.pg_url:
        ctx.notes.append("rebuild: PostgreSQL skipped (no --pg-url / NUGEN_BENCH_PG_URL / NUGEN_TEST_PG_URL)")
    size = f"{days} d x 24 h x {n} x {m}"
    for engine in engines:
        root = ctx.work / f"rebuild-{engine}"
        args = {"archive": str(archive), "root": str(root), "days": days, "accounts": n, "models": m}
        if engine == "duckdb":
            res = run_job("rebuild", {**args, "warehouse_url": f"duckdb:///{root / 'warehouse.duckdb'}"})
        else:
            assert ctx.pg_url is not None
            with scratch_pg_database(ctx.pg_url, "nugen_bench_rebuild") as url:
                res = run_job("rebuild", {**args, "warehouse_url": url})
        if engine == "duckdb":
            _keep_lake_only(ctx, root, archive, days, n, m)
        else:
            shutil.rmtree(root, ignore_errors=True)
        rate = res["rows"] / res["wall_s"]
        res["rows_per_s"] = rate
        st = res["stages_s"]
        results["engines"][engine] = res
        ctx.log(
            f"  rebuild {engine}: {res['rows']:,} rows in {res['wall_s']:.1f} s = {rate:,.0f} rows/s, "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB; CPU: replay workers {res['replay_cpu_s']:.1f} s, main "
            f"{res['main_cpu_s']:.1f} s; busy: lake {st['lake']:.1f} s ({st['lake_calls']} writes), "
            f"warehouse {st['warehouse']:.1f} s ({st['warehouse_calls']} loads)"
        )
        rows.append(
            row(
                "3 rebuild",
                f"backfill -> {engine} ({res['rows']:,} rows, {size})",
                round(rate),
                "rows/s",
                target=f">= {TARGETS[engine]:,}",
                met=rate >= TARGETS[engine],
                note=f"{res['wall_s']:.1f} s, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                f"warehouse rows {res['warehouse_rows']:,}; issue 18's target: "
                f">= {NEXT_TARGETS[engine]:,}",
            )
        )
        per_row_us, budget_us = res["cpu_s"] / res["rows"] * 1e6, cores / TARGETS[engine] * 1e6
        rows.append(
            row(
                "3 rebuild",
                f"CPU per row, backfill -> {engine} (all threads and replay processes of the pipeline)",
                round(per_row_us, 1),
                "us",
                note=f"the target leaves {budget_us:.1f} us per row on "
                f"{cores} cores" + (" (less: the server shares them)" if engine == "postgresql" else ""),
            )
        )
        rows.append(
            row(
                "3 rebuild",
                f"where the CPU goes, backfill -> {engine}: replay workers / main process",
                f"{res['replay_cpu_s']:.1f} / {res['main_cpu_s']:.1f}",
                "s",
                note=_split_note(res),
            )
        )
    # Over the 30-day size one pass of each floor takes a minute or more: one repetition is enough there.
    reps = sizes.reps if days * 24 * n * m <= FLOOR_REPEAT_ROWS else 1
    floor = [_read_and_parse(archive, days) for _ in range(reps)]
    rate = median([models / wall for wall, models in floor])
    results["read_parse_rows_per_s"], results["read_parse_rows"] = rate, floor[0][1]
    rows.append(
        row(
            "3 rebuild",
            "reading + JSON-parsing the archive alone (one process, no transform, no writes)",
            round(rate),
            "rows/s",
            note=f"{floor[0][1]:,} rows; a ceiling for the rebuild, which also "
            "flattens, commits each day to the Delta tables and loads the "
            "warehouse",
        )
    )
    replayed = [_replay_only(archive, days) for _ in range(reps)]
    wall, models = sorted(replayed)[len(replayed) // 2]  # the median repetition
    results["replay_only"] = {"wall_s": wall, "rows": models}
    rows.append(
        row(
            "3 rebuild",
            "replay + flatten alone (reading, parsing, flattening; one thread, no lake, no warehouse)",
            round(models / wall),
            "rows/s",
            note=f"{wall / models * 1e6:.1f} us per row: what the rebuild costs before any write",
        )
    )
    results["rows"] = rows
    return results


def _split_note(res: dict[str, Any]) -> str:
    st, n = res["stages_s"], res["rows"]
    return (
        f"replay workers: reading, parsing, flattening ({res['replay_cpu_s'] / n * 1e6:.1f} us per row); "
        f"main: {st['lake_calls']} lake writes of 3 Delta commits (busy {st['lake']:.1f} s) overlapped with "
        f"{st['warehouse_calls']} warehouse transactions (busy {st['warehouse']:.1f} s), a day each "
        f"({res['main_cpu_s'] / n * 1e6:.1f} us per row)"
    )


def _keep_lake_only(ctx: Context, root: Path, archive: Path, days: int, accounts: int, models: int) -> None:
    """Drop the rebuild's warehouse and archive link; keep its Delta tables for the lake scenario."""
    (root / "raw").unlink(missing_ok=True)
    for path in root.glob("warehouse.duckdb*"):
        path.unlink()
    ctx.shared["rebuilt_lake"] = {"root": str(root), "archive": str(archive), "days": days, "accounts": accounts, "models": models}


def _read_and_parse(archive: Path, days: int) -> tuple[float, int]:
    """(wall s, models) of reading, gunzipping and parsing every archived answer of the range."""
    storage = LocalStorage(archive, fsync=False)
    started = time.perf_counter()
    models = 0
    for _, _, keys in list_archived_slots(storage, start=T0, end=T0 + timedelta(days=days)):
        models += len(classify_answer(read_raw_answer(storage, keys[-1])).models or [])
    return time.perf_counter() - started, models


def _replay_only(archive: Path, days: int) -> tuple[float, int]:
    """(wall s, models) of the backfill's replay (choose, classify, flatten) of the range, writing nothing."""
    storage = LocalStorage(archive, fsync=False)
    started, models = time.perf_counter(), 0
    for day in range(days):  # day by day, as the backfill lists the archive
        start = T0 + timedelta(days=day)
        items = list_archived_slots(storage, start=start, end=start + timedelta(days=1))
        for load in replay_items(storage, items, RunSummary(command="backfill", snapshot_at=None)):
            models += load.run.model_count
    return time.perf_counter() - started, models
