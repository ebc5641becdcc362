"""Scenario 3, rebuild: ``backfill`` of the whole synthetic raw archive into an empty DuckDB and an empty
PostgreSQL database (each in a fresh process, for its peak memory)."""

from __future__ import annotations

import shutil
import time
from typing import Any

from bench.archive import ensure_archive
from bench.common import Context, row, run_job, scratch_pg_database
from bench.sizes import Sizes

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
    results["rows"] = rows
    return results
