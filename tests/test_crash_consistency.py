"""Crash consistency: SIGKILL the ``nugen-etl run`` process at many deterministic points, then rerun.

Every trial starts from a slot already loaded once ("old": the simulator one hour earlier), kills a
run of the same slot ("new") at one point (``tests/crash_harness.py``: half-written raw file,
Parquet file before/after its rename, inside a warehouse transaction before COMMIT, ...) and checks:

* every ``*.parquet`` file visible under the root parses, and the datasets read as a whole;
* every account's slot -- in Parquet and in the warehouse -- is exactly the old or the new state;
* every raw answer the archive lists decodes;
* running the slot again converges to exactly the state of an uninterrupted run (``fetched_at``
  aside, which records when the API answered).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from nugen_etl.config import Config, load_config
from nugen_etl.pipeline import run_snapshot
from nugen_etl.raw_archive import list_archived_slots, read_raw_answer
from nugen_etl.simulator import SimulatorState, serve

from .conftest import ENGINES, fresh_warehouse_url
from .e2e_helpers import T0, environ_for, write_toml_config
from .state_helpers import config_dump

HARNESS = Path(__file__).with_name("crash_harness.py")
SLOT = T0 + timedelta(hours=2)
OLD_TIME = SLOT + timedelta(minutes=3)              # the slot's first run sees this answer...
NEW_TIME = SLOT + timedelta(hours=1, minutes=3)     # ...its rerun this one (usage has grown)

# 3 raw files (one per account), 4 Parquet files (2 accounts with models x 2 datasets), 2 load
# transactions of 8 statements (batch_accounts = 2): kill points spread over all of them.
FILE_POINTS = ["raw-partial:1", "raw-before-rename:2", "raw-after-rename:3", "parquet-partial:1",
               "parquet-before-rename:2", "parquet-after-rename:3", "parquet-partial:4"]
WAREHOUSE_POINTS = ["warehouse-0:1", "warehouse-3:1", "warehouse-8:1", "warehouse-4:2", "warehouse-8:2"]
POINTS = {"duckdb": FILE_POINTS + WAREHOUSE_POINTS,
          # the file points do not depend on the engine; two of them prove the warehouse side holds
          "postgresql": ["raw-after-rename:3", "parquet-after-rename:3"] + WAREHOUSE_POINTS}

def write_config(folder: Path, base_url: str, state: SimulatorState, warehouse_url: str) -> Path:
    return write_toml_config(folder, base_url, state.account_ids, api={"max_concurrency": 1, "max_attempts": 1},
                             storage={"root": str(folder / "data"), "fsync": True},
                             warehouse={"url": warehouse_url, "batch_accounts": 2})


def warehouse_state(config: Config, accounts: list[str]) -> dict[str, dict[str, list[tuple]]]:
    return {account: config_dump(config, account) for account in accounts}


def parquet_state(root: Path, accounts: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for account in accounts:
        out[account] = {}
        for dataset in ("model_snapshots", "model_metrics"):
            files = sorted(root.glob(f"{dataset}/*/account_id={account}/*.parquet"))
            table = pq.read_table(files[0]) if files else None
            if table is not None and "fetched_at" in table.column_names:
                table = table.drop_columns(["fetched_at"])
            out[account][dataset] = (len(files), None if table is None else table.to_pylist())
    return out


def assert_readable(root: Path) -> None:
    """Every visible Parquet file parses, and the datasets read whole (hidden temporary files ignored)."""
    for path in root.rglob("*.parquet"):
        pq.read_table(path)
    for dataset in ("model_snapshots", "model_metrics"):
        if (root / dataset).exists():
            ds.dataset(root / dataset, format="parquet", partitioning="hive").to_table()
            duckdb.sql(f"select count(*) from read_parquet('{root / dataset}/**/*.parquet', "
                       "hive_partitioning=true)").fetchall()
    for _, _, paths in list_archived_slots(root, start=SLOT, end=SLOT + timedelta(seconds=1)):
        for path in paths:
            read_raw_answer(path)


@pytest.fixture(scope="module")
def references(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """``get(engine)``: the simulator, plus the old and new state of an uninterrupted pair of runs of
    the slot on that engine (built once per engine)."""
    state = SimulatorState(seed=21, accounts=3, models=4, start=T0)
    env = environ_for(state)
    built: dict[str, dict[str, Any]] = {}
    with serve(state) as server:
        def get(engine: str) -> dict[str, Any]:
            if engine not in built:
                folder = tmp_path_factory.mktemp(f"reference-{engine}")
                config = load_config(write_config(folder, server.base_url, state,
                                                  fresh_warehouse_url(request, engine, folder)), environ=env)
                accounts = list(state.account_ids)
                state.set_time(OLD_TIME)
                run_snapshot(config, snapshot_at=SLOT)
                old = (warehouse_state(config, accounts), parquet_state(config.storage_root, accounts))
                state.set_time(NEW_TIME)
                run_snapshot(config, snapshot_at=SLOT)
                new = (warehouse_state(config, accounts), parquet_state(config.storage_root, accounts))
                assert old != new, "the two runs must differ, or the test could not tell them apart"
                built[engine] = {"state": state, "server": server, "env": env, "old": old, "new": new,
                                 "accounts": accounts}
            return built[engine]

        yield get


def trial_points() -> list[Any]:
    return [pytest.param(param.values[0], point, id=f"{param.values[0]}-{point}", marks=param.marks)
            for param in ENGINES for point in POINTS[param.values[0]]]


@pytest.mark.parametrize("engine, point", trial_points())
def test_sigkill_then_rerun_converges(references, engine: str, point: str, request: pytest.FixtureRequest,
                                      tmp_path: Path) -> None:
    reference = references(engine)
    state, env, accounts = reference["state"], reference["env"], reference["accounts"]
    path = write_config(tmp_path, reference["server"].base_url, state,
                        fresh_warehouse_url(request, engine, tmp_path))
    config = load_config(path, environ=env)
    root = config.storage_root
    state.set_time(OLD_TIME)
    run_snapshot(config, snapshot_at=SLOT)
    old_wh, old_pq = reference["old"]
    new_wh, new_pq = reference["new"]
    assert warehouse_state(config, accounts) == old_wh

    state.set_time(NEW_TIME)
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "run", "--config", str(path), "--at", SLOT.isoformat(), "--force-slot",
         "--quiet"],
        env={**os.environ, **env, "NUGEN_TEST_CRASH_AT": point}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the kill point was never reached: {proc.stderr}"

    assert_readable(root)
    wh_now, pq_now = warehouse_state(config, accounts), parquet_state(root, accounts)
    for account in accounts:
        assert wh_now[account] in (old_wh[account], new_wh[account]), f"{account}: half a slot in the warehouse"
        for dataset, files in pq_now[account].items():
            assert files in (old_pq[account][dataset], new_pq[account][dataset]), f"{account} {dataset}"

    state.set_time(NEW_TIME)
    summary = run_snapshot(config, snapshot_at=SLOT)
    assert summary.exit_code == 0
    assert_readable(root)
    assert warehouse_state(config, accounts) == new_wh
    assert parquet_state(root, accounts) == new_pq
