"""The warehouse is never a gate in front of the archive: a run whose warehouse is held by a reader,
refuses connections or fails mid-batch still fetches, archives and writes the lake for every
account, records the loads as pending (exit code 3), and the next run or ``load-pending`` loads
exactly the missing slots from the raw archive -- after which the warehouse, its rollups and views
equal those of a run that never saw the outage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from nugen_etl.config import Config, load_config
from nugen_etl.pipeline import load_pending, open_configured_warehouse, run_snapshot
from nugen_etl.simulator import SimulatorState, serve
from nugen_etl.sinks.archive import list_archived_slots
from nugen_etl.sinks.pending import IN_FLIGHT, PendingJournal
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import EXIT_LOAD_PENDING
from nugen_etl.warehouse import duckdb as duckdb_module
from nugen_etl.warehouse.duckdb import DuckDBWarehouse

from .conftest import ENGINES, fresh_warehouse_url
from .e2e_helpers import FETCH_OFFSET, T0, environ_for, write_toml_config
from .programs import program
from .state_helpers import config_dump, lake_dump
from .test_warehouse_reconnect import connections_refused

SLOTS = [T0 + timedelta(hours=h) for h in range(3)]
HARNESS = Path(__file__).with_name("crash_harness.py")
ACCOUNTS = 3


@contextmanager
def world(request: pytest.FixtureRequest, engine: str, folder: Path) -> Iterator[tuple[SimulatorState, Config, Path]]:
    """A simulator and a config (batches of 2 accounts) over a fresh warehouse of ``engine``."""
    state = SimulatorState(seed=41, accounts=ACCOUNTS, models=3, start=T0)
    folder.mkdir(parents=True, exist_ok=True)
    with serve(state) as server:
        path = write_toml_config(
            folder,
            server.base_url,
            state.account_ids,
            api={"max_concurrency": 2, "max_attempts": 2, "retry_base_delay_s": 0.01},
            warehouse={"url": fresh_warehouse_url(request, engine, folder), "batch_accounts": 2},
        )
        yield state, load_config(path, environ=environ_for(state)), path


def run_at(state: SimulatorState, config: Config, slot) -> object:
    state.set_time(slot + FETCH_OFFSET)
    return run_snapshot(config, snapshot_at=slot)


def reference(request: pytest.FixtureRequest, engine: str, folder: Path) -> tuple[dict, dict]:
    """The warehouse and lake of the same slots run with no outage."""
    with world(request, engine, folder) as (state, config, path):
        for slot in SLOTS:
            assert run_at(state, config, slot).exit_code == 0
        return config_dump(config), lake_dump(config.storage_root)


def assert_archived_and_in_lake(config: Config, slot) -> None:
    archived = {a for a, _, _ in list_archived_slots(LocalStorage(config.storage_root), start=slot, end=slot + timedelta(microseconds=1))}
    assert len(archived) == ACCOUNTS
    runs = [r for r in lake_dump(config.storage_root)["account_runs"] if r["snapshot_at"] == slot]
    assert len(runs) == ACCOUNTS and {r["outcome"] for r in runs} <= {"ok", "empty"}


def health(config: Config) -> dict[str, tuple[int, bool]]:
    """account_health's pending loads per account: (count, whether pending_since is set)."""
    with open_configured_warehouse(config) as wh:
        rows = wh.fetch_all("SELECT account_id, pending_loads, pending_since FROM nugen.account_health")
    return {a: (int(n), since is not None) for a, n, since in rows}


@contextmanager
def read_only_reader(db_file: str) -> Iterator[None]:
    """A real second process holding a read-only DuckDB connection, as a notebook or a BI tool does."""
    proc = subprocess.Popen(
        [sys.executable, program("hold_duckdb"), db_file, "--read-only"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.fixture
def short_duckdb_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = dict(DuckDBWarehouse.__init__.__kwdefaults__)
    monkeypatch.setattr(DuckDBWarehouse.__init__, "__kwdefaults__", {**defaults, "busy_timeout_s": 0.5})


def test_a_reader_holding_the_duckdb_file_defers_the_load_and_the_next_run_catches_up(
    request: pytest.FixtureRequest, tmp_path: Path, short_duckdb_wait: None
) -> None:
    expected_wh, expected_lake = reference(request, "duckdb", tmp_path / "reference")
    with world(request, "duckdb", tmp_path / "outage") as (state, config, path):
        assert run_at(state, config, SLOTS[0]).exit_code == 0
        with read_only_reader(config.warehouse.url.removeprefix("duckdb:///")):
            held = run_at(state, config, SLOTS[1])
        assert held.exit_code == EXIT_LOAD_PENDING and not held.failed_accounts
        assert sorted(held.pending) == sorted(state.account_ids)
        assert "locked by another process" in next(iter(held.pending.values()))
        assert_archived_and_in_lake(config, SLOTS[1])
        assert [e.snapshot_at for e in PendingJournal(LocalStorage(config.storage_root)).entries()] == [SLOTS[1]] * 2
        assert held.backlog and not any(e["overdue"] for e in held.backlog)

        requests = state.request_count()
        caught = run_at(state, config, SLOTS[2])
        assert caught.exit_code == 0, caught.to_json()
        assert sorted(caught.caught_up) == sorted(f"{SLOTS[1].isoformat()} {a}" for a in state.account_ids)
        assert state.request_count() - requests == ACCOUNTS, "the caught-up slot called the API no more"
        assert PendingJournal(LocalStorage(config.storage_root)).entries() == []
        assert config_dump(config) == expected_wh
        assert lake_dump(config.storage_root) == expected_lake


@pytest.mark.postgres
def test_a_postgres_refusing_connections_defers_the_load_and_load_pending_catches_up(
    request: pytest.FixtureRequest, tmp_path: Path, pg_admin_url: str
) -> None:
    expected_wh, _ = reference(request, "postgresql", tmp_path / "reference")
    with world(request, "postgresql", tmp_path / "outage") as (state, config, path):
        database = config.warehouse.url.rsplit("/", 1)[1].split("?")[0]
        assert run_at(state, config, SLOTS[0]).exit_code == 0
        with connections_refused(pg_admin_url, database):
            down = [run_at(state, config, slot) for slot in SLOTS[1:]]
            still_down = load_pending(config)
        assert [s.exit_code for s in down] == [EXIT_LOAD_PENDING] * 2
        assert still_down.exit_code == EXIT_LOAD_PENDING and still_down.caught_up == []
        assert len(still_down.backlog) == 4  # two slots of two batches each
        for slot in SLOTS[1:]:
            assert_archived_and_in_lake(config, slot)
        first = load_pending(config, max_slots=1)
        assert first.exit_code == EXIT_LOAD_PENDING and len(first.caught_up) == ACCOUNTS
        rest = load_pending(config)
        assert rest.exit_code == 0 and len(rest.caught_up) == ACCOUNTS and not rest.backlog
        assert load_pending(config).caught_up == [], "a second catch-up loads nothing"
        assert config_dump(config) == expected_wh


@contextmanager
def refusing(engine: str, config: Config, account_id: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real error inside the warehouse's transaction whenever a load holds ``account_id``: on PostgreSQL
    a trigger refusing its run row; on DuckDB (no triggers) a failing statement appended to the load."""
    if engine == "postgresql":
        with psycopg.connect(config.warehouse.url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION nugen.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON nugen.account_runs FOR EACH ROW "
                f"WHEN (NEW.account_id = '{account_id}') EXECUTE FUNCTION nugen.refuse()"
            )
            try:
                yield
            finally:
                conn.execute("DROP TRIGGER refuse ON nugen.account_runs")
        return
    real = duckdb_module.load_statements

    def statements(batch, **options):  # type: ignore[no-untyped-def]
        failing = [("SELECT error('disk full (simulated)')", ())] if account_id in batch.account_ids else []
        return [*real(batch, **options), *failing]

    with monkeypatch.context() as patch:
        patch.setattr(duckdb_module, "load_statements", statements)
        yield


@pytest.mark.parametrize("engine", ENGINES)
def test_a_warehouse_failing_mid_batch_defers_only_that_batch(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch holding the refused account fails, is retried one by one, and only that account's load
    stays pending, with the warehouse's message; it loads once the fault is gone."""
    expected_wh, _ = reference(request, engine, tmp_path / "reference")
    with world(request, engine, tmp_path / "outage") as (state, config, path):
        last = sorted(state.account_ids)[-1]
        assert run_at(state, config, SLOTS[0]).exit_code == 0
        with refusing(engine, config, last, monkeypatch):
            failing = [run_at(state, config, slot) for slot in SLOTS[1:]]
        assert [s.exit_code for s in failing] == [EXIT_LOAD_PENDING] * 2
        assert all(list(s.pending) == [last] and "disk full (simulated)" in s.pending[last] for s in failing)
        assert health(config) == {a: (2, True) if a == last else (0, False) for a in state.account_ids}
        assert len(failing[1].caught_up) == 0, "the pending slot failed again and stays pending"
        caught = load_pending(config)
        assert caught.exit_code == 0 and sorted(caught.caught_up) == sorted(f"{slot.isoformat()} {last}" for slot in SLOTS[1:])
        assert health(config) == {a: (0, False) for a in state.account_ids}
        assert config_dump(config) == expected_wh


def test_sigkill_during_the_catch_up_then_load_pending_converges(
    request: pytest.FixtureRequest, tmp_path: Path, short_duckdb_wait: None
) -> None:
    """``load-pending`` killed inside its first warehouse transaction: the journal still holds every
    pending batch, and the next ``load-pending`` loads them to the no-outage state."""
    expected_wh, _ = reference(request, "duckdb", tmp_path / "reference")
    with world(request, "duckdb", tmp_path / "outage") as (state, config, path):
        assert run_at(state, config, SLOTS[0]).exit_code == 0
        with read_only_reader(config.warehouse.url.removeprefix("duckdb:///")):
            for slot in SLOTS[1:]:
                assert run_at(state, config, slot).exit_code == EXIT_LOAD_PENDING
        killed = subprocess.run(
            [sys.executable, str(HARNESS), "load-pending", "--config", str(path)],
            env={**os.environ, **environ_for(state), "NUGEN_TEST_CRASH_AT": "warehouse-6:1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert len(PendingJournal(LocalStorage(config.storage_root)).entries()) == 4
        summary = load_pending(config)
        assert summary.exit_code == 0 and len(summary.caught_up) == 2 * ACCOUNTS
        assert config_dump(config) == expected_wh


def test_a_load_that_committed_before_its_journal_entry_was_cleared_is_not_loaded_again(
    request: pytest.FixtureRequest, tmp_path: Path, short_duckdb_wait: None
) -> None:
    with world(request, "duckdb", tmp_path / "outage") as (state, config, path):
        assert run_at(state, config, SLOTS[0]).exit_code == 0
        with read_only_reader(config.warehouse.url.removeprefix("duckdb:///")):
            assert run_at(state, config, SLOTS[1]).exit_code == EXIT_LOAD_PENDING
        journal = PendingJournal(LocalStorage(config.storage_root))
        entries = journal.entries()
        assert len(load_pending(config).caught_up) == ACCOUNTS
        for entry in entries:  # what a crash right after the catch-up's commit leaves: loaded, still journaled
            journal.update(entry, entry.outcomes, entry.reason)
        loaded = config_dump(config)
        again = load_pending(config)
        assert again.caught_up == [] and again.exit_code == 0 and journal.entries() == []
        assert config_dump(config) == loaded


def test_an_entry_of_a_load_in_flight_is_left_to_its_process_and_a_stale_one_is_caught_up(
    request: pytest.FixtureRequest, tmp_path: Path, short_duckdb_wait: None
) -> None:
    """A "loading" entry younger than IN_FLIGHT belongs to another process's load under way: no run
    reports or loads it. Older, it was left by a process that died before its commit, and is caught up."""
    with world(request, "duckdb", tmp_path / "outage") as (state, config, path):
        assert run_at(state, config, SLOTS[0]).exit_code == 0
        journal = PendingJournal(LocalStorage(config.storage_root))
        outcomes = {a: "ok" for a in state.account_ids}
        now = datetime.now(UTC)
        journal.mark(SLOTS[0], outcomes, now=now)
        fresh = load_pending(config)
        assert fresh.exit_code == 0 and fresh.backlog == [] and len(journal.entries()) == 1
        journal.mark(SLOTS[0], outcomes, now=now - IN_FLIGHT - timedelta(minutes=1))
        stale = load_pending(config)
        assert stale.exit_code == 0 and stale.caught_up == [] and journal.entries() == [], (
            "its loads had committed: nothing is loaded again, the entry goes"
        )
