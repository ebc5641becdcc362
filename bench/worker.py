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
    ids = state.account_ids[: args["accounts"]]
    config = make_config(
        Path(args["root"]),
        state,
        base_url=args["base_url"],
        account_ids=ids,
        warehouse_url=args.get("warehouse_url"),
        fsync=args.get("fsync", True),
        **args.get("warehouse", {}),
    )
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    summary = run_snapshot(config, snapshot_at=T0)
    return {
        "wall_s": time.perf_counter() - started,
        "records": sum(r.model_count for r in summary.runs),
        "outcomes": dict(summary.outcomes),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_run_mib": rss_before,
        "duckdb_memory_limit": config.warehouse.duckdb_memory_limit,
        "batch_accounts": config.warehouse.batch_accounts,
    }


def rebuild(args: dict[str, Any]) -> dict[str, Any]:
    """``backfill`` of the whole archive (symlinked in as ``raw/``) into ``warehouse_url``, with the optional
    ``warehouse`` settings of ``args``.

    The lake commits and the warehouse loads are timed as they happen (``stages_s``: each stage's busy
    time; the backfill overlaps them, in two threads, with each other and with the replay's worker
    processes). ``cpu_s`` includes those workers; ``main_cpu_s`` is this process alone.
    """
    from nugen_etl.pipeline import backfill, open_configured_warehouse

    root = Path(args["root"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "raw").symlink_to(Path(args["archive"]) / "raw", target_is_directory=True)
    state = SimulatorState(SEED, args["accounts"] + 1, models=args["models"], start=T0)
    config = make_config(root, state, warehouse_url=args["warehouse_url"], fsync=args.get("fsync", True), **args.get("warehouse", {}))
    first = T0.date()
    last = first + timedelta(days=args["days"] - 1)
    with open_configured_warehouse(config) as wh:
        wh.migrate()  # an empty, migrated warehouse: the timed part is the rebuild alone
    stages = _time_stages()
    rss_before = peak_rss_mib()
    # with the replay's worker processes, which the backfill has ended and waited for when it returns
    started, main_before, all_before = time.perf_counter(), cpu_seconds(), cpu_seconds(children=True)
    summary = backfill(config, first=first, last=date.fromordinal(last.toordinal()))
    wall = time.perf_counter() - started
    main_cpu = cpu_seconds() - main_before
    workers_cpu = max(0.0, cpu_seconds(children=True) - all_before - main_cpu)
    with open_configured_warehouse(config) as wh:
        ((count,),) = wh.fetch_all("SELECT count(*) FROM nugen.model_snapshots")
    return {
        "wall_s": wall,
        "cpu_s": main_cpu + workers_cpu,
        "main_cpu_s": main_cpu,
        "replay_cpu_s": workers_cpu,
        "rows": sum(r.model_count for r in summary.runs),
        "slots": len(summary.runs),
        "errors": len(summary.errors),
        "warehouse_rows": int(count),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_run_mib": rss_before,
        "stages_s": stages,
    }


def _time_stages() -> dict[str, float]:
    """Wrap ``Lake.write`` and ``Warehouse.load`` (this process only) to add up their wall time and calls;
    the returned dict fills in as they run."""
    from nugen_etl.sinks.lake import Lake
    from nugen_etl.warehouse.base import Warehouse

    totals = {"lake": 0.0, "lake_calls": 0, "warehouse": 0.0, "warehouse_calls": 0}

    def timing(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                totals[name] += time.perf_counter() - started
                totals[f"{name}_calls"] += 1

        return wrapper

    Lake.write = timing("lake", Lake.write)  # type: ignore[method-assign]
    Warehouse.load = timing("warehouse", Warehouse.load)  # type: ignore[method-assign]
    return totals


JOBS = {"snapshot": snapshot, "rebuild": rebuild}


def main() -> None:
    from nugen_etl.runtime import use_system_allocator_for_arrow

    use_system_allocator_for_arrow()  # as the CLI and the Airflow tasks do
    name, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(JOBS[name](args)), flush=True)


if __name__ == "__main__":
    main()
