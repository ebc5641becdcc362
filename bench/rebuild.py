"""Scenario 3, rebuild: ``backfill`` of the whole synthetic raw archive into an empty DuckDB and an empty
PostgreSQL database (each in a fresh process, for its peak memory)."""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.archive import ensure_archive
from bench.common import T0, Context, median, row, run_job, scratch_pg_database
from bench.sizes import Sizes
from nugen_etl.classify import classify_answer
from nugen_etl.raw_archive import list_archived_slots, read_raw_answer
from nugen_etl.storage import LocalStorage

TARGETS = {"duckdb": 300_000, "postgresql": 100_000}


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    days, n, m = sizes.rb_days, sizes.rb_accounts, sizes.rb_models
    started = time.perf_counter()
    archive = ensure_archive(ctx.cache, days, n, m)
    gen_s = time.perf_counter() - started
    ctx.log(f"  raw archive ready in {gen_s:.1f} s: {archive}")
    results: dict[str, Any] = {"days": days, "accounts": n, "models": m, "archive": str(archive),
                               "archive_ready_s": gen_s, "engines": {}}
    rows = []
    cores = os.cpu_count() or 1
    engines = ["duckdb"] + (["postgresql"] if ctx.pg_url else [])
    if not ctx.pg_url:
        ctx.notes.append("rebuild: PostgreSQL skipped (no --pg-url / NUGEN_BENCH_PG_URL / NUGEN_TEST_PG_URL)")
    for engine in engines:
        root = ctx.work / f"rebuild-{engine}"
        args = {"archive": str(archive), "root": str(root), "days": days, "accounts": n, "models": m}
        if engine == "duckdb":
            res = run_job("rebuild", {**args, "warehouse_url": f"duckdb:///{root / 'warehouse.duckdb'}"})
        else:
            assert ctx.pg_url is not None
            with scratch_pg_database(ctx.pg_url, "nugen_bench_rebuild") as url:
                res = run_job("rebuild", {**args, "warehouse_url": url})
        shutil.rmtree(root, ignore_errors=True)
        rate = res["rows"] / res["wall_s"]
        res["rows_per_s"] = rate
        results["engines"][engine] = res
        ctx.log(f"  rebuild {engine}: {res['rows']:,} rows in {res['wall_s']:.1f} s = {rate:,.0f} rows/s, "
                f"peak RSS {res['peak_rss_mib']:.0f} MiB")
        rows.append(row("3 rebuild", f"backfill -> {engine} ({res['rows']:,} rows, {days} d x 24 h x {n} x {m})",
                        round(rate), "rows/s", target=f">= {TARGETS[engine]:,}", met=rate >= TARGETS[engine],
                        note=f"{res['wall_s']:.1f} s, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                             f"warehouse rows {res['warehouse_rows']:,}"))
        per_row_us, budget_us = res["cpu_s"] / res["rows"] * 1e6, cores / TARGETS[engine] * 1e6
        rows.append(row("3 rebuild", f"CPU per row, backfill -> {engine} (all threads of the pipeline)",
                        round(per_row_us, 1), "us", note=f"the target leaves {budget_us:.1f} us per row on "
                        f"{cores} cores" + (" (less: the server shares them)" if engine == "postgresql" else "")))
    floor = [_read_and_parse(archive, days) for _ in range(sizes.reps)]
    rate = median([models / wall for wall, models in floor])
    results["read_parse_rows_per_s"], results["read_parse_rows"] = rate, floor[0][1]
    rows.append(row("3 rebuild", "reading + JSON-parsing the archive alone (one process, no transform, no writes)",
                    round(rate), "rows/s", note=f"{floor[0][1]:,} rows; a ceiling for the rebuild, which also "
                                                 "flattens, writes 2 Parquet files per slot and loads the warehouse"))
    results["rows"] = rows
    return results


def _read_and_parse(archive: Path, days: int) -> tuple[float, int]:
    """(wall s, models) of reading, gunzipping and parsing every archived answer of the range."""
    storage = LocalStorage(archive, fsync=False)
    started = time.perf_counter()
    models = 0
    for _, _, keys in list_archived_slots(storage, start=T0, end=T0 + timedelta(days=days)):
        models += len(classify_answer(read_raw_answer(storage, keys[-1])).models or [])
    return time.perf_counter() - started, models
