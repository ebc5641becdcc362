"""Shared pieces: the simulator in its own process, a Config against it, timing, peak memory and
fresh-subprocess jobs.

The simulator always runs in a separate process (``python -m bench.simserver``): in-process it
would take the GIL from the pipeline it is serving, and the numbers would measure the two together.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nugen_etl.config import Config, parse_config
from nugen_etl.simulator import SimulatorState

SEED = 6
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # simulator start; every scenario's slots are at or after it
FETCH_OFFSET = timedelta(minutes=3)  # the simulated clock within a slot
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Context:
    """What every scenario gets: where to write, the PostgreSQL server (or None) and notes to report."""

    work: Path
    pg_url: str | None
    cache: Path
    notes: list[str] = field(default_factory=list)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
    # What one scenario leaves for a later one of the same run (the rebuilt 30-day lake for the lake scan).
    shared: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def peak_rss_mib() -> float:
    """Peak resident set size of this process image so far, in MiB.

    ``VmHWM`` rather than ``getrusage``: after fork+exec, ``ru_maxrss`` still carries the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


def cpu_seconds(*, children: bool = False) -> float:
    """CPU time (user + system, every thread) this process has used so far; with ``children``, plus that
    of its child processes that have ended and been waited for (a backfill's replay workers)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if children:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += usage.ru_utime + usage.ru_stime
    return total


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kib = 0
    import duckdb
    import pyarrow

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "load_avg": load_avg(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
        "deltalake": importlib.metadata.version("deltalake"),
    }  # not imported: no delta-rs runtime here


def load_avg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine shows up in every figure."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# --- the simulator in its own process ------------------------------------------------------------


@dataclass(frozen=True)
class Sim:
    base_url: str
    state: SimulatorState  # a parent-side twin with the same seed: api keys and payloads, never served
    at: datetime  # the simulated time the server's clock is frozen at
    account_ids: list[str]  # the accounts asked for, every one with models (the simulator's empty one is not)


@contextmanager
def simulator(accounts: int, models: int, *, latency_ms: float = 0.0, at: datetime = T0 + FETCH_OFFSET) -> Iterator[Sim]:
    """A simulator subprocess with ``accounts`` x ``models``, clock frozen at ``at``, bodies pre-built.

    The simulator's last account has no models, so it is started with one more than asked for.
    """
    cmd = [
        sys.executable,
        "-m",
        "bench.simserver",
        "--seed",
        str(SEED),
        "--accounts",
        str(accounts + 1),
        "--models",
        str(models),
        "--latency-ms",
        str(latency_ms),
        "--start",
        T0.isoformat(),
        "--at",
        at.isoformat(),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"simulator did not start (exit {proc.poll()}): {line!r}")
        base_url = line.split()[1]
        state = SimulatorState(SEED, accounts + 1, models=models, start=T0)
        yield Sim(base_url, state, at, state.account_ids[:accounts])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def key_env(account_id: str) -> str:
    return "NUGEN_BENCH_KEY_" + account_id.upper().replace("-", "_")


def make_config(
    root: Path,
    state: SimulatorState,
    *,
    base_url: str = "http://127.0.0.1:9",
    account_ids: Sequence[str] | None = None,
    warehouse_url: str | None = None,
    max_concurrency: int = 32,
    fsync: bool = True,
    batch_accounts: int | None = None,
    duckdb_memory_limit: str | None = None,
) -> Config:
    """A Config of ``account_ids`` (default all of the simulator's but its empty one) against ``base_url``;
    ``batch_accounts`` and ``duckdb_memory_limit`` are the pipeline's defaults unless given."""
    ids = list(state.account_ids[:-1] if account_ids is None else account_ids)
    data = {
        "api": {
            "base_url": base_url,
            "timeout_s": 60,
            "max_concurrency": max_concurrency,
            "max_attempts": 2,
            "retry_base_delay_s": 0.01,
            "deadline_s": 120,
        },
        "storage": {"root": str(root), "fsync": fsync},
        "warehouse": {
            "url": warehouse_url or f"duckdb:///{root / 'warehouse.duckdb'}",
            **({"batch_accounts": batch_accounts} if batch_accounts else {}),
            **({"duckdb_memory_limit": duckdb_memory_limit} if duckdb_memory_limit else {}),
        },
        "accounts": [{"id": a, "api_key_env": key_env(a)} for a in ids],
    }
    return parse_config(data, base_dir=root, environ={key_env(a): state.api_key(a) for a in ids})


def fetch_only(config: Config, base_url: str) -> tuple[float, list[Any]]:
    """Every configured account fetched ``max_concurrency`` at a time and nothing else: (wall s, answers)."""
    from concurrent.futures import ThreadPoolExecutor

    from nugen_etl.pipeline import build_client

    client = build_client(config, base_url)
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(config.api.max_concurrency) as pool:
            raws = list(pool.map(lambda a: client.fetch_account(a.id, a.api_key.reveal(), snapshot_at=T0), config.accounts))
        return time.perf_counter() - started, raws
    finally:
        client.close()


# --- jobs in fresh subprocesses ------------------------------------------------------------------


def run_job(name: str, args: dict[str, Any], *, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ``bench.worker`` job ``name`` in a fresh interpreter; its last stdout line is the JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker", name, json.dumps(args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench job {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(
    scenario: str, metric: str, value: float | str | None, unit: str = "", *, target: str = "", met: bool | None = None, note: str = ""
) -> dict[str, Any]:
    """One line of the results table."""
    return {"scenario": scenario, "metric": metric, "value": value, "unit": unit, "target": target, "met": met, "note": note}
