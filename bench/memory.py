"""Scenario 5, memory: peak RSS of a run over few accounts versus many of the same size, each in a fresh
process (the run must stream accounts through rather than hold every answer)."""

from __future__ import annotations

import shutil
from typing import Any

from bench.common import Context, median, row, run_job, simulator
from bench.sizes import Sizes


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    small, large, m = sizes.mem_small, sizes.mem_large, sizes.mem_models
    peaks: dict[int, list[float]] = {small: [], large: []}
    runs: dict[int, list[dict[str, Any]]] = {small: [], large: []}
    with simulator(large, m) as sim:
        for rep in range(sizes.reps):
            for n in (small, large):
                root = ctx.work / f"memory-{n}-{rep}"
                res = run_job("snapshot", {"root": str(root), "base_url": sim.base_url, "accounts": n,
                                           "total_accounts": large + 1, "models": m})
                shutil.rmtree(root, ignore_errors=True)
                peaks[n].append(res["peak_rss_mib"])
                runs[n].append(res)
                ctx.log(f"  memory {n} accounts: peak RSS {res['peak_rss_mib']:.0f} MiB "
                        f"({res['records']} records, {res['wall_s']:.1f} s)")
    p_small, p_large = median(peaks[small]), median(peaks[large])
    ratio = p_large / p_small
    return {"small": small, "large": large, "models": m, "runs": {str(k): v for k, v in runs.items()},
            "peak_rss_mib": {str(small): p_small, str(large): p_large}, "ratio": ratio,
            "rows": [row("5 memory", f"peak RSS {large:,} vs {small} accounts (x {m} models)", round(ratio, 2),
                         "x", target="<= 1.5x", met=ratio <= 1.5,
                         note=f"{p_large:.0f} MiB vs {p_small:.0f} MiB")]}
