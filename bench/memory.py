"""Scenario 5, memory: peak RSS of a run over few accounts versus many of the same size, each in a fresh
process (the run must stream accounts through rather than hold every answer). Into DuckDB (the
default, in-process warehouse) and, with a PostgreSQL server, into PostgreSQL (out of process), so
the table separates the pipeline's memory from the embedded engine's."""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from typing import Any

from bench.common import Context, median, row, run_job, scratch_pg_database, simulator
from bench.sizes import Sizes

TARGET = 1.5


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    small, large, m = sizes.mem_small, sizes.mem_large, sizes.mem_models
    engines = ["duckdb"] + (["postgresql"] if ctx.pg_url else [])
    results: dict[str, Any] = {"small": small, "large": large, "models": m, "engines": {}, "rows": []}
    with simulator(large, m) as sim:
        for engine in engines:
            peaks: dict[int, list[float]] = {small: [], large: []}
            runs: dict[int, list[dict[str, Any]]] = {small: [], large: []}
            for rep in range(sizes.reps):
                for n in (small, large):
                    root = ctx.work / f"memory-{engine}-{n}-{rep}"
                    scratch = (scratch_pg_database(ctx.pg_url, "nugen_bench_memory") if engine == "postgresql"
                               else nullcontext(None))
                    with scratch as url:
                        res = run_job("snapshot", {"root": str(root), "base_url": sim.base_url, "accounts": n,
                                                   "total_accounts": large + 1, "models": m, "warehouse_url": url})
                    shutil.rmtree(root, ignore_errors=True)
                    peaks[n].append(res["peak_rss_mib"])
                    runs[n].append(res)
                    ctx.log(f"  memory {engine} {n} accounts: peak RSS {res['peak_rss_mib']:.0f} MiB "
                            f"({res['records']} records, {res['wall_s']:.1f} s)")
            p_small, p_large = median(peaks[small]), median(peaks[large])
            ratio = p_large / p_small
            results["engines"][engine] = {"runs": {str(k): v for k, v in runs.items()},
                                          "peak_rss_mib": {str(small): p_small, str(large): p_large},
                                          "ratio": ratio}
            results["rows"].append(row(
                "5 memory", f"{engine}: peak RSS {large:,} vs {small} accounts (x {m} models)", round(ratio, 2),
                "x", target=f"<= {TARGET}x", met=ratio <= TARGET, note=f"{p_large:.0f} MiB vs {p_small:.0f} MiB"
                + ("; the server's memory is not counted" if engine == "postgresql" else "")))
    if not ctx.pg_url:
        ctx.notes.append("memory: PostgreSQL skipped (no --pg-url / NUGEN_BENCH_PG_URL / NUGEN_TEST_PG_URL)")
    return results
