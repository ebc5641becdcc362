"""``python -m bench.worker JOB ARGS_JSON``: a measured job in a fresh interpreter (clean peak memory).

Prints one JSON line with the job's result.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import SEED, T0, cpu_seconds, make_config, peak_rss_mib
from nugen_etl.simulator import SimulatorState


def snapshot(args: dict[str, Any]) -> dict[str, Any]:
    """One ``run_snapshot`` over the first ``accounts`` simulator accounts (into ``warehouse_url`` when
    given, else a DuckDB file under ``root``), with the optional ``warehouse`` settings of ``args``."""
    from nugen_etl.pipeline import run_snapshot

    state = SimulatorState(SEED, args["total_accounts"], models=args["models"], start=T0)
    ids = state.account_ids[:args["accounts"]]
    config = make_config(Path(args["root"]), state, base_url=args["base_url"], account_ids=ids,
                         warehouse_url=args.get("warehouse_url"), fsync=args.get("fsync", True),
                         **args.get("warehouse", {}))
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    summary = run_snapshot(config, snapshot_at=T0)
    return {"wall_s": time.perf_counter() - started, "records": sum(r.model_count for r in summary.runs),
            "outcomes": dict(summary.outcomes), "peak_rss_mib": peak_rss_mib(),
            "rss_before_run_mib": rss_before, "duckdb_memory_limit": config.warehouse.duckdb_memory_limit,
            "batch_accounts": config.warehouse.batch_accounts}


def rebuild(args: dict[str, Any]) -> dict[str, Any]:
    """``backfill`` of the whole archive (symlinked in as ``raw/``) into ``warehouse_url``, with the optional
    ``warehouse`` settings of ``args``."""
    from nugen_etl.pipeline import backfill, open_configured_warehouse

    root = Path(args["root"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "raw").symlink_to(Path(args["archive"]) / "raw", target_is_directory=True)
    state = SimulatorState(SEED, args["accounts"] + 1, models=args["models"], start=T0)
    config = make_config(root, state, warehouse_url=args["warehouse_url"], fsync=args.get("fsync", True),
                         **args.get("warehouse", {}))
    first = T0.date()
    last = first + timedelta(days=args["days"] - 1)
    with open_configured_warehouse(config) as wh:
        wh.migrate()       # an empty, migrated warehouse: the timed part is the rebuild alone
    rss_before = peak_rss_mib()
    started, cpu_before = time.perf_counter(), cpu_seconds()
    summary = backfill(config, first=first, last=date.fromordinal(last.toordinal()))
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    with open_configured_warehouse(config) as wh:
        (count,), = wh.fetch_all("SELECT count(*) FROM nugen.model_snapshots")
    return {"wall_s": wall, "cpu_s": cpu, "rows": sum(r.model_count for r in summary.runs),
            "slots": len(summary.runs), "errors": len(summary.errors), "warehouse_rows": int(count),
            "peak_rss_mib": peak_rss_mib(), "rss_before_run_mib": rss_before}


JOBS = {"snapshot": snapshot, "rebuild": rebuild}


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(JOBS[name](args)), flush=True)


if __name__ == "__main__":
    main()
