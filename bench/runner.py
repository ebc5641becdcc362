"""Run the chosen scenarios, then write ``<out>/latest.json`` and ``<out>/latest.md``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bi, dag_parse, fanout, flat_cost, lake, memory, peer, rebuild, throughput
from bench.common import ROOT, Context, load_avg, machine, row
from bench.report import render_markdown
from bench.sizes import Sizes

SCENARIOS: dict[str, Callable[[Sizes, Context], dict[str, Any]]] = {
    "fanout": fanout.run,
    "throughput": throughput.run,
    "rebuild": rebuild.run,
    "flat_cost": flat_cost.run,
    "memory": memory.run,
    "dag_parse": dag_parse.run,
    "lake": lake.run,  # after rebuild: it scans the lake the rebuild wrote
    "bi": bi.run,
    "peer": peer.run,
}


def default_pg_url() -> str | None:
    return os.environ.get("NUGEN_BENCH_PG_URL") or os.environ.get("NUGEN_TEST_PG_URL") or None


def run_suite(
    sizes: Sizes,
    *,
    scenarios: Sequence[str] = tuple(SCENARIOS),
    out: Path | None,
    pg_url: str | None = None,
    cache: Path | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Run ``scenarios`` at ``sizes``; write the JSON and Markdown to ``out`` (unless None) and return the result.

    A scenario that raises is reported with its error; the others still run.
    """
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    work = Path(tempfile.mkdtemp(prefix="nugen-bench-"))
    ctx = Context(work=work, pg_url=pg_url, cache=cache or Path(tempfile.gettempdir()) / "nugen-bench-cache")
    ctx.cache.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": sizes.name,
        "command": command,
        "machine": machine(),
        "scenarios": {},
        "notes": ctx.notes,
    }
    started = time.perf_counter()
    try:
        for name in scenarios:
            ctx.log(f"[bench] {name} ({sizes.name})")
            t = time.perf_counter()
            try:
                res = SCENARIOS[name](sizes, ctx)
            except Exception as exc:  # report and go on: one broken scenario must not hide the others
                traceback.print_exc()
                res = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "rows": [row(name, "error", None, note=f"{type(exc).__name__}: {exc}"[:200])],
                }
            res["duration_s"] = time.perf_counter() - t
            result["scenarios"][name] = res
            ctx.log(f"[bench] {name} done in {res['duration_s']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["duration_s"] = time.perf_counter() - started
    result["load_avg_at_end"] = load_avg()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        (out / "latest.md").write_text(render_markdown(result))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from bench.sizes import FULL, QUICK
    from nugen_etl.runtime import use_system_allocator_for_arrow

    use_system_allocator_for_arrow()  # as the CLI and the Airflow tasks do

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (development)")
    p.add_argument(
        "--scenarios",
        nargs="+",
        default=list(SCENARIOS),
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"which scenarios to run (default all: {' '.join(SCENARIOS)})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for latest.json and latest.md (default bench/results, bench/results/quick with --quick)",
    )
    p.add_argument(
        "--pg-url",
        default=default_pg_url(),
        help="PostgreSQL server whose user may create databases (default $NUGEN_BENCH_PG_URL, "
        "then $NUGEN_TEST_PG_URL); without one the PostgreSQL parts are skipped",
    )
    p.add_argument("--cache", type=Path, default=None, help="where generated inputs are kept between runs")
    p.add_argument(
        "--rebuild-days",
        type=int,
        default=None,
        help="days of hourly slots the rebuild replays and the lake scan reads (default 30, the issue's size; quick 2)",
    )
    a = p.parse_args(argv)
    # A terminated run still stops its simulator subprocess and removes its scratch folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = (
        "python -m bench"
        + (" --quick" if a.quick else "")
        + ("" if a.scenarios == list(SCENARIOS) else " --scenarios " + " ".join(a.scenarios))
        + ("" if a.rebuild_days is None else f" --rebuild-days {a.rebuild_days}")
    )
    out = a.out or (ROOT / "bench" / "results" / ("quick" if a.quick else ""))
    sizes = QUICK if a.quick else FULL
    if a.rebuild_days is not None:
        sizes = replace(sizes, rb_days=a.rebuild_days)
    result = run_suite(sizes, scenarios=a.scenarios, out=out, pg_url=a.pg_url, cache=a.cache, command=command)
    sys.stdout.write(render_markdown(result))
    return 0
