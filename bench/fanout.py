"""Scenario 1, fan-out: a latency-bound run, wall time over ceil(accounts / max_concurrency) x latency."""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any

from bench.common import T0, Context, cpu_seconds, fetch_only, make_config, median, row, simulator
from bench.sizes import Sizes
from nugen_etl.pipeline import run_snapshot

TARGET = 1.3  # wall time over the latency bound


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    n, m, lat, conc = sizes.fanout_accounts, sizes.fanout_models, sizes.fanout_latency_ms, sizes.fanout_concurrency
    limit_s = math.ceil(n / conc) * lat / 1000
    walls, cpus, fetch_walls, fetch_cpus, outcomes = [], [], [], [], {}
    with simulator(n, m, latency_ms=lat) as sim:
        for rep in range(sizes.reps):
            root = ctx.work / f"fanout-{rep}"
            config = make_config(root, sim.state, base_url=sim.base_url, max_concurrency=conc)
            started, cpu_before = time.perf_counter(), cpu_seconds()
            summary = run_snapshot(config, snapshot_at=T0)
            walls.append(time.perf_counter() - started)
            cpus.append(cpu_seconds() - cpu_before)
            outcomes = dict(summary.outcomes)
            ctx.log(f"  fan-out rep {rep + 1}: {walls[-1]:.2f} s ({outcomes})")
            shutil.rmtree(root, ignore_errors=True)
            cpu_before = cpu_seconds()
            fetch_walls.append(fetch_only(config, sim.base_url)[0])
            fetch_cpus.append(cpu_seconds() - cpu_before)
            ctx.log(f"  fan-out rep {rep + 1}, fetch alone: {fetch_walls[-1]:.2f} s")
    wall, fetch_wall, cpu, fetch_cpu = median(walls), median(fetch_walls), median(cpus), median(fetch_cpus)
    ratio = wall / limit_s
    cores = os.cpu_count() or 1
    cpu_budget = cores * TARGET * limit_s  # core-seconds a run may use and still finish within the target
    return {
        "accounts": n,
        "models": m,
        "latency_ms": lat,
        "max_concurrency": conc,
        "limit_s": limit_s,
        "wall_s": walls,
        "wall_median_s": wall,
        "ratio": ratio,
        "outcomes": outcomes,
        "fetch_alone_s": fetch_walls,
        "cpu_s": cpus,
        "fetch_alone_cpu_s": fetch_cpus,
        "cpu_budget_s": cpu_budget,
        "rows": [
            row(
                "1 fan-out",
                f"wall / latency bound ({n} acc x {m} models, {lat:g} ms, conc {conc})",
                round(ratio, 2),
                "x",
                target=f"<= {TARGET}x",
                met=ratio <= TARGET,
                note=f"wall {wall:.2f} s vs bound {limit_s:.2f} s",
            ),
            row(
                "1 fan-out",
                "fetch alone / latency bound (HTTP client + simulator, no pipeline)",
                round(fetch_wall / limit_s, 2),
                "x",
                note=f"wall {fetch_wall:.2f} s: what the pipeline's own work adds is the difference",
            ),
            row(
                "1 fan-out",
                "pipeline CPU / CPU the target leaves (cores x target x bound)",
                round(cpu / cpu_budget, 2),
                "x",
                note=f"{cpu:.1f} core-s used (all threads, simulator excluded) vs {cores} x {TARGET} x "
                f"{limit_s:.2f} s = {cpu_budget:.1f} core-s; above 1 the target needs less CPU "
                f"per account or more cores",
            ),
            row(
                "1 fan-out",
                "HTTP client CPU per account (fetch alone: httpx, connection pool, response parsing)",
                round(1000 * fetch_cpu / n, 2),
                "ms",
                note=f"{100 * fetch_cpu / cpu:.0f}% of the run's {1000 * cpu / n:.1f} ms per account; the rest is "
                "archiving, flattening, the lake and the warehouse",
            ),
        ],
    }
