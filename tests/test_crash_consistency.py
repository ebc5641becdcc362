"""Crash consistency: SIGKILL the ``nugen-etl run`` process at many deterministic points, then rerun.

Every trial starts from a slot already loaded once ("old": the simulator one hour earlier), kills a
run of the same slot ("new") at one point (``tests/crash_harness.py``: half-written raw file, raw
file before/after its rename, right before a Delta write, with a write's data files on disk but
not committed, right after a commit, inside a warehouse transaction before COMMIT, ...) and checks:

* each Delta table opens at its newest committed version, every log entry parses, every file that
  version references parses, and the table reads whole (every row converts);
* data files that no commit ever added exist only after ``lake-files-written`` (the point really
  left uncommitted files), and no reader of the table sees them;
* every account's rows in each lake table and in the warehouse are exactly the old or the new
  state, and for the lake points exactly the state the commit order implies (commits before the
  point are visible, later ones are not: e.g. new snapshots beside old metrics);
* every raw answer the archive lists decodes;
* running the slot again converges to exactly the lake rows (read through deltalake) and warehouse
  rows of an uninterrupted run (``fetched_at`` aside, which records when the API answered).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from nugen_etl.config import Config, load_config
from nugen_etl.pipeline import run_snapshot
from nugen_etl.simulator import SimulatorState, serve
from nugen_etl.sinks.archive import list_archived_slots, read_raw_answer
from nugen_etl.sinks.lake import LAKE_TABLES
from nugen_etl.warehouse.duckdb import DuckDBWarehouse
from nugen_etl.warehouse.postgres import PostgresWarehouse

from .conftest import ENGINES, fresh_warehouse_url
from .crash_harness import LOG_ENTRY
from .e2e_helpers import T0, environ_for, write_toml_config
from .state_helpers import config_dump, sorted_rows, without_fetched_at

HARNESS = Path(__file__).with_name("crash_harness.py")
SLOT = T0 + timedelta(hours=2)
OLD_TIME = SLOT + timedelta(minutes=3)  # the slot's first run sees this answer...
NEW_TIME = SLOT + timedelta(hours=1, minutes=3)  # ...its rerun this one (usage has grown)
TABLES = [spec.name for spec in LAKE_TABLES]  # a batch commits the first two at once, then the third
BATCH = 2  # warehouse.batch_accounts

# 4 accounts fetched one at a time (the last one has no models): 4 raw files; 2 batches of 2
# accounts, each 3 Delta commits (model_snapshots, model_metrics, account_runs) then a load
# transaction (the slot statements, then the rollup upkeep from statement 9 on). Kill points spread
# over all of them.
FILE_POINTS = ["raw-partial:1", "raw-before-rename:2", "raw-after-rename:3"]
LAKE_POINTS = [
    "lake-before-commit:1",
    "lake-files-written:1",
    "lake-after-commit:1",
    "lake-after-commit:3",
    "lake-files-written:4",
    "lake-after-commit:5",
]
WAREHOUSE_POINTS = ["warehouse-0:1", "warehouse-3:1", "warehouse-8:1", "warehouse-4:2", "warehouse-8:2", "warehouse-20:2"]
POINTS = {
    "duckdb": FILE_POINTS + LAKE_POINTS + WAREHOUSE_POINTS,
    # the file and lake points do not depend on the engine; two of them prove the warehouse
    # side holds when the process dies around the lake
    "postgresql": ["raw-after-rename:3", "lake-after-commit:3"] + WAREHOUSE_POINTS,
}


def write_config(folder: Path, base_url: str, state: SimulatorState, warehouse_url: str) -> Path:
    return write_toml_config(
        folder,
        base_url,
        state.account_ids,
        api={"max_concurrency": 1, "max_attempts": 1},
        storage={"root": str(folder / "data"), "fsync": True},
        warehouse={"url": warehouse_url, "batch_accounts": BATCH},
    )


def warehouse_state(config: Config, accounts: list[str]) -> dict[str, dict[str, list[tuple]]]:
    return {account: config_dump(config, account) for account in accounts}


def lake_state(root: Path, accounts: list[str]) -> dict[str, dict[str, list[tuple]]]:
    """account -> table -> its rows at the table's current version (through deltalake), sorted,
    without ``fetched_at``."""
    out: dict[str, dict[str, list[tuple]]] = {account: {} for account in accounts}
    for name in TABLES:
        table = without_fetched_at(DeltaTable(str(root / name)).to_pyarrow_table())
        rows = sorted_rows(table)
        account_at = table.column_names.index("account_id")
        for account in accounts:
            out[account][name] = [r for r in rows if r[account_at] == account]
    return out


def log_entries(folder: Path) -> dict[int, list[dict[str, Any]]]:
    """Every committed log entry of a table, parsed: version -> its actions."""
    entries = {}
    for path in (folder / "_delta_log").iterdir():
        if LOG_ENTRY.fullmatch(path.name):
            assert path.is_file(), f"{path} is not a log entry"
            entries[int(path.name[:20])] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return entries


def uncommitted_files(root: Path) -> dict[str, set[str]]:
    """Per table, the data files on disk that no commit ever added."""
    out = {}
    for name in TABLES:
        folder = root / name
        added = {unquote(action["add"]["path"]) for actions in log_entries(folder).values() for action in actions if "add" in action}
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts}
        out[name] = on_disk - added
    return out


def assert_readable(root: Path) -> None:
    """Each table is at its newest committed version and reads whole; the raw archive decodes."""
    for name in TABLES:
        folder = root / name
        entries = log_entries(folder)
        assert sorted(entries) == list(range(len(entries))), f"{name}: a gap in the log"
        table = DeltaTable(str(folder))
        assert table.version() == max(entries), f"{name}: not at its newest committed version"
        for uri in table.file_uris():
            pq.read_table(uri)
        rows = table.to_pyarrow_table()
        assert len(rows.to_pylist()) == rows.num_rows
    for _, _, paths in list_archived_slots(root, start=SLOT, end=SLOT + timedelta(seconds=1)):
        for path in paths:
            read_raw_answer(path)


def expected_after(point: str, accounts: list[str], old: dict, new: dict, *, overlap: bool) -> tuple[dict, dict] | None:
    """(lake, warehouse) states per account that a kill at a lake point may leave, from the commit
    order: batch after batch, its two data commits at once (model_snapshots and model_metrics, in
    either order), then its runs commit, then its warehouse load, which (``overlap``: the engine's
    ``live_loads_overlap``) may run beside the next batch's lake commits and has ended before the
    batch after that starts. Lake and warehouse: account -> the allowed states (for the lake, per
    table). None for other points."""
    when, _, nth = point.removeprefix("lake-").rpartition(":")
    if not point.startswith("lake-"):
        return None
    n = int(nth)  # the n-th write to start
    (old_wh, old_lake), (new_wh, new_lake) = old, new
    lake: dict[str, dict[str, list[list[tuple]]]] = {}
    warehouse = {}
    for i, account in enumerate(accounts):
        batch = i // BATCH
        runs_entry = 3 * batch + 3
        if n > runs_entry or (n == runs_entry and when == "after-commit"):
            states = {name: [new_lake[account][name]] for name in TABLES}
        elif n == runs_entry:
            states = {name: [new_lake[account][name]] for name in TABLES[:2]}
            states[TABLES[2]] = [old_lake[account][TABLES[2]]]
        elif n > 3 * batch:  # one of this batch's two concurrent data commits: either may have landed
            states = {name: [old_lake[account][name], new_lake[account][name]] for name in TABLES[:2]}
            states[TABLES[2]] = [old_lake[account][TABLES[2]]]
        else:
            states = {name: [old_lake[account][name]] for name in TABLES}
        lake[account] = states
        # a batch's warehouse load runs after its runs commit and before the next batch's first write,
        # or, overlapped, before the next batch's load starts (once that batch's runs commit is done)
        loaded = n > runs_entry + 3 if overlap else n > runs_entry
        maybe = overlap and runs_entry < n <= runs_entry + 3
        warehouse[account] = [old_wh[account], new_wh[account]] if maybe else [(new_wh if loaded else old_wh)[account]]
    return lake, warehouse


@pytest.fixture(scope="module")
def references(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """``get(engine)``: the simulator, plus the old and new state of an uninterrupted pair of runs of
    the slot on that engine (built once per engine)."""
    state = SimulatorState(seed=21, accounts=4, models=4, start=T0)
    env = environ_for(state)
    built: dict[str, dict[str, Any]] = {}
    with serve(state) as server:

        def get(engine: str) -> dict[str, Any]:
            if engine not in built:
                folder = tmp_path_factory.mktemp(f"reference-{engine}")
                config = load_config(
                    write_config(folder, server.base_url, state, fresh_warehouse_url(request, engine, folder)), environ=env
                )
                accounts = list(state.account_ids)
                state.set_time(OLD_TIME)
                run_snapshot(config, snapshot_at=SLOT)
                old = (warehouse_state(config, accounts), lake_state(config.storage_root, accounts))
                state.set_time(NEW_TIME)
                run_snapshot(config, snapshot_at=SLOT)
                new = (warehouse_state(config, accounts), lake_state(config.storage_root, accounts))
                # the two runs must differ in both data tables of an account of each batch, or a
                # lake point could not be told from its neighbours
                for account in accounts[0], accounts[BATCH]:
                    for name in TABLES[:2]:
                        assert old[1][account][name] != new[1][account][name], (account, name)
                assert old[0] != new[0]
                built[engine] = {"state": state, "server": server, "env": env, "old": old, "new": new, "accounts": accounts}
            return built[engine]

        yield get


def trial_points() -> list[Any]:
    return [
        pytest.param(param.values[0], point, id=f"{param.values[0]}-{point}", marks=param.marks)
        for param in ENGINES
        for point in POINTS[param.values[0]]
    ]


@pytest.mark.parametrize("engine, point", trial_points())
def test_sigkill_then_rerun_converges(references, engine: str, point: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    reference = references(engine)
    state, env, accounts = reference["state"], reference["env"], reference["accounts"]
    path = write_config(tmp_path, reference["server"].base_url, state, fresh_warehouse_url(request, engine, tmp_path))
    config = load_config(path, environ=env)
    root = config.storage_root
    state.set_time(OLD_TIME)
    run_snapshot(config, snapshot_at=SLOT)
    old_wh, old_lake = reference["old"]
    new_wh, new_lake = reference["new"]
    assert warehouse_state(config, accounts) == old_wh
    assert lake_state(root, accounts) == old_lake
    assert uncommitted_files(root) == {name: set() for name in TABLES}

    state.set_time(NEW_TIME)
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "run", "--config", str(path), "--at", SLOT.isoformat(), "--force-slot", "--quiet"],
        env={**os.environ, **env, "NUGEN_TEST_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, f"the kill point was never reached: {proc.stderr}"

    assert_readable(root)
    orphans = uncommitted_files(root)
    n = int(point.rpartition(":")[2])
    if point.startswith("lake-files-written:") and n % 3 == 0:
        assert orphans[TABLES[2]], "the runs write's data files were on disk when the process died"
        assert sum(map(bool, orphans.values())) == 1, orphans
    elif point.startswith("lake-files-written:"):  # a data write; its concurrent twin may have left files too
        assert any(orphans[name] for name in TABLES[:2]), "the write's data files were on disk when it died"
        assert not orphans[TABLES[2]], orphans
    elif point.startswith("lake-") and n % 3:
        assert not orphans[TABLES[2]], orphans  # only the concurrent data twin can have been mid-write
    else:
        assert orphans == {name: set() for name in TABLES}
    wh_now, lake_now = warehouse_state(config, accounts), lake_state(root, accounts)
    for account in accounts:
        assert wh_now[account] in (old_wh[account], new_wh[account]), f"{account}: half a slot in the warehouse"
        for name, rows in lake_now[account].items():
            assert rows in (old_lake[account][name], new_lake[account][name]), f"{account} {name}"
    overlap = {"duckdb": DuckDBWarehouse, "postgresql": PostgresWarehouse}[engine].live_loads_overlap
    expected = expected_after(point, accounts, reference["old"], reference["new"], overlap=overlap)
    if expected is not None:
        for account, allowed in expected[0].items():
            for name, states in allowed.items():
                assert lake_now[account][name] in states, f"{account} {name}: not a state the commit order allows"
        for account, states in expected[1].items():
            assert wh_now[account] in states, f"{account}: not a warehouse state the load order allows"

    state.set_time(NEW_TIME)
    summary = run_snapshot(config, snapshot_at=SLOT)
    assert summary.exit_code == 0
    assert_readable(root)
    assert warehouse_state(config, accounts) == new_wh
    assert lake_state(root, accounts) == new_lake
