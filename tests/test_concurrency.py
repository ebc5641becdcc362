"""Idempotency and concurrency: the same slot many times, two processes on one slot at once, a
backfill racing a live run -- always exactly one copy of each row and the same lake rows (the
lake's concurrent commits to one Delta table are retried, never lost or doubled).
On DuckDB a second writer waits for the lock and, if it stays taken, says "warehouse busy" (a live run
archives, writes the lake and exits 3 with its loads pending)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from nugen_etl import schemas
from nugen_etl.config import load_config
from nugen_etl.pipeline import open_configured_warehouse, run_snapshot
from nugen_etl.simulator import SimulatorState, serve

from .conftest import ENGINES, fresh_warehouse_url
from .e2e_helpers import FETCH_OFFSET, T0, environ_for, write_toml_config
from .state_helpers import config_dump, lake_commits_since, lake_dump, lake_version

HARNESS = Path(__file__).with_name("crash_harness.py")
SLOTS = [T0 + timedelta(hours=h) for h in range(3)]


def write_config(folder: Path, base_url: str, state: SimulatorState, warehouse_url: str) -> Path:
    return write_toml_config(
        folder,
        base_url,
        state.account_ids,
        api={"max_concurrency": 2, "max_attempts": 2, "retry_base_delay_s": 0.01},
        warehouse={"url": warehouse_url, "batch_accounts": 2},
    )


@pytest.fixture
def sim():
    state = SimulatorState(seed=31, accounts=3, models=4, start=T0)
    with serve(state) as server:
        yield state, server


def setup_world(request, engine: str, folder: Path, sim) -> tuple:
    state, server = sim
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder, server.base_url, state, fresh_warehouse_url(request, engine, folder))
    return path, load_config(path, environ=environ_for(state))


def cli(path: Path, state: SimulatorState, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **environ_for(state), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, str(HARNESS), *args, "--config", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out, err


def assert_one_copy_each(config) -> None:
    with open_configured_warehouse(config) as wh:
        for spec in schemas.ALL_TABLES:
            pk = ", ".join(spec.primary_key)
            ((total, distinct),) = wh.fetch_all(f"select count(*), count(distinct ({pk})) from nugen.{spec.name}")
            assert total == distinct, spec.name


@pytest.mark.parametrize("engine", ENGINES)
def test_same_slot_n_times_is_one_slot(engine, sim, request, tmp_path) -> None:
    state, _ = sim
    _, config = setup_world(request, engine, tmp_path, sim)
    state.set_time(SLOTS[0] + FETCH_OFFSET)
    run_snapshot(config, snapshot_at=SLOTS[0])
    once_wh, once_lake = config_dump(config), lake_dump(config.storage_root)
    assert once_wh["model_snapshots"] and once_lake["model_snapshots"]
    version = lake_version(config.storage_root, "model_snapshots")
    for _ in range(4):
        assert run_snapshot(config, snapshot_at=SLOTS[0]).exit_code == 0
    assert config_dump(config) == once_wh
    assert lake_dump(config.storage_root) == once_lake
    assert lake_version(config.storage_root, "model_snapshots") >= version + 4, "each rerun committed"
    assert_one_copy_each(config)
    # the raw archive keeps every answer (append-only): five runs, five answers per account
    assert len(list((config.storage_root / "raw" / "account_id=acct-0001").rglob("*.raw.gz"))) == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_two_processes_on_the_same_slot_at_once(engine, sim, request, tmp_path) -> None:
    state, _ = sim
    _, reference = setup_world(request, engine, tmp_path / "reference", sim)
    state.set_time(SLOTS[1] + FETCH_OFFSET)
    run_snapshot(reference, snapshot_at=SLOTS[1])

    path, config = setup_world(request, engine, tmp_path / "racing", sim)
    state.latency_ms = 150  # both runs are in flight together
    args = ("run", "--at", SLOTS[1].isoformat(), "--force-slot", "--quiet")
    procs = [cli(path, state, *args), cli(path, state, *args)]
    results = [finish(p) for p in procs]
    state.latency_ms = 0
    for code, _, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert config_dump(config) == config_dump(reference)
    assert lake_dump(config.storage_root) == lake_dump(reference.storage_root)
    assert_one_copy_each(config)
    # both processes committed their rows to the same tables: the later commit replaced the earlier
    for name in ("model_snapshots", "account_runs"):
        writes = [c for c in lake_commits_since(config.storage_root, name, -1) if c["operation"] == "WRITE"]
        assert len({c["nugen.run_id"] for c in writes}) == 2, name


@pytest.mark.parametrize("engine", ENGINES)
def test_backfill_racing_a_live_run(engine, sim, request, tmp_path) -> None:
    state, _ = sim
    path, config = setup_world(request, engine, tmp_path, sim)
    for slot in SLOTS:
        state.set_time(slot + FETCH_OFFSET)
        run_snapshot(config, snapshot_at=slot)
    before_wh, before_lake = config_dump(config), lake_dump(config.storage_root)

    state.latency_ms = 100
    day = SLOTS[0].date().isoformat()
    backfill = cli(path, state, "backfill", "--from", day, "--to", (SLOTS[-1].date()).isoformat(), "--quiet")
    live = cli(path, state, "run", "--at", SLOTS[-1].isoformat(), "--force-slot", "--quiet")
    results = [finish(backfill), finish(live)]
    state.latency_ms = 0
    for code, _, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert config_dump(config) == before_wh
    assert lake_dump(config.storage_root) == before_lake
    assert_one_copy_each(config)


def test_duckdb_second_writer_waits_then_proceeds(sim, request, tmp_path) -> None:
    state, _ = sim
    path, config = setup_world(request, "duckdb", tmp_path, sim)
    state.set_time(SLOTS[0] + FETCH_OFFSET)
    db_file = config.warehouse.url.removeprefix("duckdb:///")
    holder = duckdb.connect(db_file)  # another process's writer, as far as the CLI can tell
    release = threading.Timer(1.0, holder.close)
    release.start()
    try:
        code, _, err = finish(cli(path, state, "run", "--at", SLOTS[0].isoformat(), "--force-slot", "--quiet"))
    finally:
        release.cancel()
        holder.close()
    assert code == 0, err
    assert "Traceback" not in err
    assert config_dump(config)["model_snapshots"]


@pytest.mark.parametrize("command", [["migrate"], ["backfill", "--from", "2026-03-01", "--to", "2026-03-01"]])
def test_duckdb_second_writer_gets_warehouse_busy_not_a_traceback(command, sim, request, tmp_path) -> None:
    state, _ = sim
    path, config = setup_world(request, "duckdb", tmp_path, sim)
    holder = duckdb.connect(config.warehouse.url.removeprefix("duckdb:///"))
    try:
        code, out, err = finish(cli(path, state, *command, extra_env={"NUGEN_TEST_DUCKDB_BUSY_S": "1"}))
    finally:
        holder.close()
    assert code == 1
    assert "Traceback" not in err and "Traceback" not in out
    assert "nugen-etl: warehouse busy:" in err and "locked by another process" in err
    assert state.request_count() == 0, "nothing is fetched"


def test_a_run_against_a_held_duckdb_file_archives_and_exits_3(sim, request, tmp_path) -> None:
    state, _ = sim
    path, config = setup_world(request, "duckdb", tmp_path, sim)
    state.set_time(SLOTS[0] + FETCH_OFFSET)
    holder = duckdb.connect(config.warehouse.url.removeprefix("duckdb:///"))
    try:
        code, out, err = finish(
            cli(path, state, "run", "--at", SLOTS[0].isoformat(), "--force-slot", extra_env={"NUGEN_TEST_DUCKDB_BUSY_S": "1"})
        )
    finally:
        holder.close()
    assert code == 3, err
    assert "Traceback" not in err and "Traceback" not in out
    assert "warehouse load pending for 3 account(s)" in err and "locked by another process" in err
    assert state.request_count() == 3
    assert lake_dump(config.storage_root)["account_runs"]
