"""A warehouse connection lost in the middle of a run is opened again; the batch it took is loaded again.

Real faults on real engines: DuckDB invalidates its database when a checkpoint cannot write (here the
file-size limit of the process, as on a full disk); PostgreSQL ends a session by
``pg_terminate_backend`` and refuses new ones while the database does not allow connections.
"""

from __future__ import annotations

import logging
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import psycopg
import pytest
from deltalake import DeltaTable

from nugen_etl.errors import WarehouseError, WarehouseUnavailable
from nugen_etl.records import SlotLoad
from nugen_etl.sinks.lake import open_lake
from nugen_etl.sinks.writer import SlotWriter
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import RunSummary
from nugen_etl.warehouse import Warehouse, open_warehouse
from nugen_etl.warehouse.duckdb import DuckDBWarehouse
from tests.programs import program
from tests.test_warehouse import at, models_abc, ok_slot

LOST = "lost its connection during the load of"
USAGE_SQL = (
    "SELECT account_id, snapshot_at, sum(usage_count) FROM nugen.model_snapshots "
    "GROUP BY account_id, snapshot_at ORDER BY account_id, snapshot_at"
)


def usage_of(*loads: SlotLoad) -> list[tuple[str, datetime, int]]:
    """What USAGE_SQL must return once ``loads`` are in, computed from the loads themselves."""
    return sorted(
        (load.run.account_id, load.run.snapshot_at, sum(load.tables["model_snapshots"]["usage_count"].to_pylist())) for load in loads
    )


def _lift_file_size_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.getrlimit(resource.RLIMIT_FSIZE)[1],) * 2)


@contextmanager
def disk_full_past(nbytes: int) -> Iterator[None]:
    """Writes past ``nbytes`` of any file fail (EFBIG) in this process, as on a full disk."""
    before_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, before_signal)


class SpaceFreedBeforeReopen(DuckDBWarehouse):
    def _reconnect(self) -> None:
        _lift_file_size_limit()
        super()._reconnect()


def _checkpoint_every_commit(wh: DuckDBWarehouse) -> list[tuple]:
    """Make each commit checkpoint into the file; returns the connection's setting before."""
    default = wh.fetch_all("SELECT current_setting('checkpoint_threshold')")
    wh.con.execute("SET checkpoint_threshold = '1KB'")
    assert wh.fetch_all("SELECT current_setting('checkpoint_threshold')") != default
    return default


def test_duckdb_invalidated_by_a_failed_checkpoint_is_reopened_and_the_batch_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "w.duckdb"
    first = ok_slot("acme", at(1), models_abc())
    batch = [ok_slot("acme", at(2), models_abc(2)), ok_slot("globex", at(2), models_abc(3))]
    with SpaceFreedBeforeReopen(str(path)) as wh:
        wh.migrate()
        wh.load([first])
        default = _checkpoint_every_commit(wh)
        with caplog.at_level(logging.WARNING, logger="nugen_etl.warehouse"), disk_full_past(4096):
            wh.load(batch)
        [lost] = [r.getMessage() for r in caplog.records]
        assert f"{LOST} 2 account(s) (FatalException:" in lost and "Could not write file" in lost
        assert wh.fetch_all("SELECT current_setting('checkpoint_threshold')") == default  # a new connection
        assert wh.fetch_all(USAGE_SQL) == usage_of(first, *batch)
    with duckdb.connect(str(path)) as con:  # committed to the file
        assert con.execute(USAGE_SQL).fetchall() == usage_of(first, *batch)


def test_duckdb_load_that_stays_without_disk_fails_and_the_next_one_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, later = ok_slot("acme", at(1), models_abc()), ok_slot("globex", at(3), models_abc(4))
    with DuckDBWarehouse(str(tmp_path / "w.duckdb")) as wh:
        wh.migrate()
        wh.load([first])
        _checkpoint_every_commit(wh)
        with caplog.at_level(logging.WARNING, logger="nugen_etl.warehouse"), disk_full_past(4096):
            with pytest.raises(WarehouseError, match="account.s. acme, globex"):
                wh.load([ok_slot("acme", at(2), models_abc(2)), ok_slot("globex", at(2), models_abc(3))])
        assert any(LOST in r.getMessage() for r in caplog.records)
        wh.load([later])  # without the reopen, DuckDB would refuse it: "database has been invalidated"
        assert wh.fetch_all(USAGE_SQL) == usage_of(first, later)


def test_duckdb_taken_by_another_process_after_a_fatal_error_is_unavailable_not_busy(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    holder: list[subprocess.Popen[str]] = []

    class TakenBeforeReopen(SpaceFreedBeforeReopen):
        def _reconnect(self) -> None:  # another writer opens the file in the moment it is closed
            if holder:
                return super()._reconnect()
            self.con.close()
            _lift_file_size_limit()
            holder.append(
                subprocess.Popen(
                    [sys.executable, program("hold_duckdb"), str(path)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            assert holder[0].stdout is not None and holder[0].stdout.readline().strip() == "ready"
            return super()._reconnect()

    first, later = ok_slot("acme", at(1), models_abc()), ok_slot("globex", at(3), models_abc(4))
    try:
        with TakenBeforeReopen(str(path), busy_timeout_s=0.5) as wh:
            wh.migrate()
            wh.load([first])
            _checkpoint_every_commit(wh)
            with disk_full_past(4096), pytest.raises(WarehouseUnavailable, match="locked by another process"):
                wh.load([ok_slot("acme", at(2), models_abc(2))])  # a run goes on archiving; WarehouseBusy would end it
            holder[0].kill()
            holder[0].wait()
            wh.load([later])  # ConnectionException: the next load reopens the file
            assert wh.fetch_all(USAGE_SQL) == usage_of(first, later)
    finally:
        for process in holder:
            process.kill()
            process.wait()


# --- PostgreSQL -------------------------------------------------------------------------------


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _end_session(admin_url: str, wh: Warehouse) -> None:
    [(pid,)] = wh.fetch_all("SELECT pg_backend_pid()")
    with _admin(admin_url) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


@contextmanager
def connections_refused(admin_url: str, database: str) -> Iterator[None]:
    with _admin(admin_url) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        yield
    finally:
        with _admin(admin_url) as conn:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@pytest.fixture
def pg_own_database(new_pg_database: Callable[[], str], pg_admin_url: str) -> tuple[str, str]:
    """A database of this test's own (its connections are refused for a while), and its name."""
    url = new_pg_database()
    return url, url.rsplit("/", 1)[1].split("?")[0]


@pytest.mark.postgres
def test_pg_session_ended_by_the_server_is_reopened_and_the_batch_loaded(
    pg_own_database: tuple[str, str], pg_admin_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = pg_own_database
    first = ok_slot("acme", at(1), models_abc())
    batch = [ok_slot("acme", at(2), models_abc(2)), ok_slot("globex", at(2), models_abc(3))]
    with open_warehouse(url) as wh:
        wh.migrate()
        wh.load([first])
        [(before,)] = wh.fetch_all("SELECT pg_backend_pid()")
        _end_session(pg_admin_url, wh)
        with caplog.at_level(logging.WARNING, logger="nugen_etl.warehouse"):
            wh.load(batch)
        [lost] = [r.getMessage() for r in caplog.records]
        assert f"{LOST} 2 account(s) (AdminShutdown:" in lost
        assert wh.fetch_all("SELECT pg_backend_pid()") != [(before,)]
        assert wh.fetch_all("SELECT current_setting('TimeZone')") == [("UTC",)]
        assert wh.fetch_all(USAGE_SQL) == usage_of(first, *batch)


@pytest.mark.postgres
def test_pg_unreachable_after_a_lost_session_raises_unavailable_and_the_next_load_reconnects(
    pg_own_database: tuple[str, str], pg_admin_url: str
) -> None:
    url, name = pg_own_database
    password = "pg-s3cret-never-shown"  # trust auth ignores it; it must still never be printed
    first, later = ok_slot("acme", at(1), models_abc()), ok_slot("globex", at(3), models_abc(4))
    with open_warehouse(url, password=password) as wh:
        wh.migrate()
        wh.load([first])
        with connections_refused(pg_admin_url, name):
            _end_session(pg_admin_url, wh)
            with pytest.raises(WarehouseUnavailable, match="cannot reconnect") as refused:
                wh.load([ok_slot("acme", at(2), models_abc(2))])
            with pytest.raises(WarehouseUnavailable):  # every load tries again, and says so again
                wh.load([ok_slot("acme", at(2), models_abc(2))])
        assert password not in str(refused.value) and password not in repr(wh)
        wh.load([later])
        assert wh.fetch_all(USAGE_SQL) == usage_of(first, later)


@pytest.mark.postgres
def test_slot_writer_fails_an_unreachable_batch_whole_and_goes_on_with_the_next(
    pg_own_database: tuple[str, str], pg_admin_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, name = pg_own_database
    unreachable = [ok_slot(a, at(2), models_abc(i + 1)) for i, a in enumerate(("acme", "globex", "initech"))]
    later = [ok_slot(a, at(3), models_abc(i + 5)) for i, a in enumerate(("acme", "globex", "initech"))]
    summary = RunSummary("run", at(2))
    with open_warehouse(url) as wh:
        wh.migrate()
        with open_lake(LocalStorage(tmp_path, fsync=False)) as lake, SlotWriter(lake, wh, batch_size=3, summary=summary) as writer:
            with connections_refused(pg_admin_url, name), caplog.at_level(logging.WARNING, logger="nugen_etl.warehouse"):
                _end_session(pg_admin_url, wh)
                for load in unreachable:
                    writer.add(load)  # the third fills the batch: it is written when the next load comes, or
                writer.flush()  # now
            assert sum(LOST in r.getMessage() for r in caplog.records) == 1  # not once more per account
            for load in later:
                writer.add(load)
        assert sorted(summary.errors) == ["acme", "globex", "initech"]
        assert all("cannot reconnect" in error for error in summary.errors.values())
        assert wh.fetch_all(USAGE_SQL) == usage_of(*later)
    # the lake is written before the warehouse: the unloaded batch's rows are there, for a backfill
    db = duckdb.connect()
    db.register("snapshots", DeltaTable(str(tmp_path / "model_snapshots")).to_pyarrow_dataset())
    assert db.sql(USAGE_SQL.replace("nugen.model_snapshots", "snapshots")).fetchall() == usage_of(*unreachable, *later)
