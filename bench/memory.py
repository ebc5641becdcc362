"""Scenario 5, memory: peak RSS of a run over few accounts versus many of the same size, each in a fresh
process (the run must stream accounts through rather than hold every answer). Into DuckDB (the
default, in-process warehouse) and, with a PostgreSQL server, into PostgreSQL (out of process), so
the table separates the pipeline's memory from the embedded engine's. One more row runs DuckDB without
its per-load memory budget, in 200-account batches (``UNBUDGETED``, the defaults before docs/performance-history.md's
seventh round), which shows what the budget saves."""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from typing import Any

from bench.common import Context, median, row, run_job, simulator
from bench.sizes import Sizes
from tests.pg_scratch import scratch_pg_database

TARGET = 1.5
UNBUDGETED = {"duckdb_memory_limit": "none", "batch_accounts": 200}


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    small, large, m = sizes.mem_small, sizes.mem_large, sizes.mem_models
    engines = ["duckdb"] + (["postgresql"] if ctx.pg_url else [])
    results: dict[str, Any] = {"small": small, "large": large, "models": m, "engines": {}, "rows": []}
    with simulator(large, m) as sim:
        for engine in engines:
            res = _measure(sizes, ctx, sim.base_url, engine, {})
            results["engines"][engine] = res
            results["rows"].append(
                row(
                    "5 memory",
                    f"{engine}: peak RSS {large:,} vs {small} accounts (x {m} models)",
                    round(res["ratio"], 2),
                    "x",
                    target=f"<= {TARGET}x",
                    met=res["ratio"] <= TARGET,
                    note=_peaks(res, small, large) + ("; the server's memory is not counted" if engine == "postgresql" else ""),
                )
            )
        unbudgeted = results["unbudgeted"] = _measure(sizes, ctx, sim.base_url, "duckdb", UNBUDGETED)
        settings = ", ".join(f"{k} {v}" for k, v in UNBUDGETED.items())
        results["rows"].append(
            row(
                "5 memory",
                f"duckdb without the per-load budget ({settings}): peak RSS {large:,} vs {small} accounts",
                round(unbudgeted["ratio"], 2),
                "x",
                note=_peaks(unbudgeted, small, large) + "; DuckDB keeps every block it touched cached",
            )
        )
    if not ctx.pg_url:
        ctx.notes.append("memory: PostgreSQL skipped (no --pg-url / NUGEN_BENCH_PG_URL / NUGEN_TEST_PG_URL)")
    return results


def _measure(sizes: Sizes, ctx: Context, base_url: str, engine: str, warehouse: dict[str, Any]) -> dict[str, Any]:
    """Median peak RSS of ``sizes.reps`` fresh-process runs over the small and the large account count."""
    small, large, m = sizes.mem_small, sizes.mem_large, sizes.mem_models
    peaks: dict[int, list[float]] = {small: [], large: []}
    runs: dict[int, list[dict[str, Any]]] = {small: [], large: []}
    label = engine + (" unbudgeted" if warehouse else "")
    for rep in range(sizes.reps):
        for n in (small, large):
            root = ctx.work / f"memory-{label.replace(' ', '-')}-{n}-{rep}"
            scratch = scratch_pg_database(ctx.pg_url, "nugen_bench_memory") if engine == "postgresql" else nullcontext(None)
            with scratch as url:
                res = run_job(
                    "snapshot",
                    {
                        "root": str(root),
                        "base_url": base_url,
                        "accounts": n,
                        "total_accounts": large + 1,
                        "models": m,
                        "warehouse_url": url,
                        "warehouse": warehouse,
                    },
                )
            shutil.rmtree(root, ignore_errors=True)
            peaks[n].append(res["peak_rss_mib"])
            runs[n].append(res)
            ctx.log(
                f"  memory {label} {n} accounts: peak RSS {res['peak_rss_mib']:.0f} MiB ({res['records']} records, {res['wall_s']:.1f} s)"
            )
    p_small, p_large = median(peaks[small]), median(peaks[large])
    return {
        "runs": {str(k): v for k, v in runs.items()},
        "peak_rss_mib": {str(small): p_small, str(large): p_large},
        "ratio": p_large / p_small,
    }


def _peaks(res: dict[str, Any], small: int, large: int) -> str:
    return f"{res['peak_rss_mib'][str(large)]:.0f} MiB vs {res['peak_rss_mib'][str(small)]:.0f} MiB"
