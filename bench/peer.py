"""Scenario 9, peer: the same job done by nugen-etl and by a plain dlt pipeline, side by side.

The job: every account's current models, ``peer_accounts`` x ``peer_models`` at zero latency from one
simulator, into DuckDB. nugen-etl runs ``run_snapshot`` (raw archive, Delta lake, warehouse with its
rollups). dlt (``pip install 'dlt[duckdb]'``, the ``bench`` extra) runs one REST resource per account
that yields the answer's models, merged into DuckDB on (account_id, id), as a new user would write it.
Each runs in a fresh process, alternated ``reps`` times; the median walls and their ratio are reported.
Without dlt installed the scenario is skipped with that note.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from typing import Any

from bench.common import ROOT, Context, median, row, run_job, simulator
from bench.sizes import Sizes

TARGET = 20.0  # nugen-etl at least this many times faster than dlt (issue 18)


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    if importlib.util.find_spec("dlt") is None:
        ctx.notes.append("peer: skipped, dlt is not installed (pip install 'nugen-etl[bench]')")
        return {"skipped": "dlt is not installed", "rows": []}
    n, m = sizes.peer_accounts, sizes.peer_models
    ours: list[float] = []
    theirs: list[float] = []
    records = 0
    with simulator(n, m) as sim:
        keys = {a: sim.state.api_key(a) for a in sim.account_ids}
        for rep in range(sizes.reps):
            root = ctx.work / f"peer-nugen-{rep}"
            res = run_job("snapshot", {"root": str(root), "base_url": sim.base_url, "total_accounts": n + 1, "accounts": n, "models": m})
            ours.append(res["wall_s"])
            records = res["records"]
            shutil.rmtree(root, ignore_errors=True)
            folder = ctx.work / f"peer-dlt-{rep}"
            folder.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [sys.executable, "-m", "bench.peer_dlt", json.dumps({"base_url": sim.base_url, "keys": keys, "folder": str(folder)})],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=7200,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"the dlt pipeline failed: {proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            theirs.append(got["wall_s"])
            if got["rows"] != records:
                raise RuntimeError(f"dlt loaded {got['rows']} models, nugen-etl {records}: not the same job")
            shutil.rmtree(folder, ignore_errors=True)
            ctx.log(f"  peer rep {rep + 1}: nugen-etl {ours[-1]:.2f} s, dlt {theirs[-1]:.2f} s ({records} models)")
    ratio = median(theirs) / median(ours)
    size = f"{n:,} accounts x {m} models, zero latency, into DuckDB"
    rows = [
        row(
            "9 peer",
            f"nugen-etl end to end ({size})",
            round(median(ours), 2),
            "s",
            note="raw archive, Delta lake and warehouse with rollups, fsync on",
        ),
        row(
            "9 peer",
            f"dlt end to end ({size})",
            round(median(theirs), 2),
            "s",
            note="a REST resource per account, merge on (account_id, id) into DuckDB",
        ),
        row(
            "9 peer",
            "nugen-etl speed-up over dlt",
            round(ratio, 1),
            "x",
            target=f">= {TARGET:g}x",
            met=ratio >= TARGET,
            note=f"median of {sizes.reps} alternated runs each",
        ),
    ]
    return {"accounts": n, "models": m, "records": records, "nugen_s": ours, "dlt_s": theirs, "ratio": ratio, "rows": rows}
