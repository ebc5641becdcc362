"""The embedded DuckDB warehouse: one file, one writer process at a time."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from nugen_etl.errors import WarehouseBusy, WarehouseError, WarehouseUnavailable
from nugen_etl.schemas import MODEL_METRIC_LISTS, MODEL_SNAPSHOTS
from nugen_etl.warehouse import migrations
from nugen_etl.warehouse.base import Warehouse
from nugen_etl.warehouse.load_sql import duplicate_key_sql, load_statements, only_appends
from nugen_etl.warehouse.rollups import Statement
from nugen_etl.warehouse.staging import StagedBatch

log = logging.getLogger(__name__)

BULK_CHECKPOINT_THRESHOLD = "256MB"  # ~5 days of a 100-account x 20-model backfill between checkpoints
_BUSY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0)  # ~10 s before giving up
AUTO_MEMORY = "auto"
_MiB = 1 << 20
HEADROOM_MIN = 32 * _MiB  # a load's budget over the index memory loads have held...
_HEADROOM_PER_STAGED_BYTE = 4  # ...or 4x its staged Arrow bytes, whichever is more


class DuckDBWarehouse(Warehouse):
    """``nugen.*`` in a DuckDB file (or ``:memory:``), session time zone UTC.

    ``memory_limit``: a size caps DuckDB's memory for the connection (beyond it DuckDB evicts cached
    blocks and spills to ``<file>.tmp``); ``None`` leaves DuckDB's default (80 % of RAM);
    ``"auto"`` (the default) budgets each load instead. Left alone, DuckDB keeps every block a
    load or a checkpoint touched cached, so a process's memory grows with the warehouse. Under
    ``"auto"`` the connection's first load runs uncapped and measures the memory of the primary-key
    indexes before its commit (they load lazily and grow with the history). Every later load, its
    commit and checkpoint included, runs under a cap of the most index memory measured so far plus
    a headroom of 4x the batch's staged bytes (at least ``headroom_min``, 32 MiB); the cap is
    lifted when the load ends. A load that runs out of memory under its budget is rolled back and
    run again with twice the headroom (which stays doubled for the connection: on a warehouse with
    history the commit's checkpoint needs it), and if that fails too, without the cap. An in-memory
    database has no file to evict its blocks to, so ``"auto"`` leaves it uncapped.

    DuckDB lets one process open a file for writing; if another holds it, opening retries for
    about ``busy_timeout_s`` seconds and then raises ``WarehouseBusy``. After a fatal error DuckDB
    invalidates the database for the process; the next load reopens the file (see ``Warehouse.load``).
    """

    engine = "duckdb"
    # A live run's loads overlap its lake writes: the fan-out ran ~12 % faster and the 1,000 x 200 run
    # ~15 %, at 1.40x the 10-account peak RSS on 2,000 accounts (1.38x in turn; the target is 1.5x).
    live_loads_overlap = True

    def __init__(
        self,
        path: str,
        *,
        url: str | None = None,
        busy_timeout_s: float = 10.0,
        memory_limit: str | None = AUTO_MEMORY,
        headroom_min: int = HEADROOM_MIN,
    ) -> None:
        super().__init__(url or f"duckdb:///{path}")
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._budgeted = memory_limit == AUTO_MEMORY and path != ":memory:"  # in memory, nothing to evict to
        self._index_bytes: int | None = None  # the most primary-key index memory a load has held
        self._headroom_min, self._headroom_scale = headroom_min, 1
        self._busy_timeout_s = busy_timeout_s
        self._config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit and memory_limit != AUTO_MEMORY else {}
        )
        self._con: duckdb.DuckDBPyConnection | None = self._open()

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = _connect(self.path, self._busy_timeout_s, self._config)
        con.execute("SET TimeZone = 'UTC'")
        # A scheduled job's log is no terminal: DuckDB's progress bar would print into it on long statements.
        con.execute("SET enable_progress_bar_print = false")
        return con

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise WarehouseError(f"warehouse {self.url} is closed")
        return self._con

    def migrate(self) -> list[str]:
        con = self.con
        try:
            con.execute(migrations.read_bootstrap())
            applied = [v for (v,) in con.execute("SELECT version FROM nugen.schema_migrations").fetchall()]
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot prepare migrations in {self.url}: {exc}") from exc
        done = []
        for migration in migrations.pending(migrations.discover(self.engine), applied):
            con.begin()
            try:
                con.execute(migration.sql)
                for sql, params in migrations.follow_ups(migration):
                    con.execute(sql, list(params))
                con.execute("INSERT INTO nugen.schema_migrations (version, applied_at) VALUES (?, current_timestamp)", [migration.version])
                con.commit()
            except duckdb.Error as exc:
                con.rollback()
                raise WarehouseError(f"migration {migration.source} failed in {self.url}: {exc}") from exc
            done.append(migration.version)
        return done

    @contextmanager
    def loading_in_bulk(self) -> Iterator[None]:
        """Checkpoint every ``BULK_CHECKPOINT_THRESHOLD`` of write-ahead log instead of DuckDB's 16 MB,
        and once at the end; and load on one DuckDB thread. A day of a 100-account backfill writes
        ~50 MB of WAL, so by default every commit checkpointed, rewriting the table's last, partly
        filled row group each time; committed loads are durable in the WAL either way. A backfill's
        replay workers and lake commits already keep the cores busy: a second DuckDB thread only adds
        coordination (~20 % more CPU for the same loads). See docs/performance.md."""
        self.con.execute(f"SET checkpoint_threshold = '{BULK_CHECKPOINT_THRESHOLD}'")
        self.con.execute("SET threads = 1")
        try:
            yield
        finally:
            con = self._con  # a reconnect in between opened it with the defaults
            if con is not None:
                try:
                    con.execute("RESET checkpoint_threshold")
                    con.execute("RESET threads")
                    con.execute("CHECKPOINT")
                except duckdb.Error as exc:  # the loads are committed; DuckDB checkpoints the WAL later
                    log.warning(
                        "DuckDB warehouse %s: the checkpoint after the bulk loads failed (%s); "
                        "DuckDB replays its write-ahead log when the file is next opened",
                        self.url,
                        exc,
                    )

    def _load_staged(self, batch: StagedBatch, compact: bool) -> None:
        for attempt in range(2):  # under the budget, then with twice its headroom, then uncapped
            budget = self.load_budget(batch)
            if budget is None:
                break
            try:
                self._transaction(batch, compact, memory_limit=budget)
                return
            except duckdb.Error as exc:
                if not _out_of_memory(exc):
                    raise
                self._headroom_scale *= 2
                log.log(
                    logging.INFO if attempt == 0 else logging.WARNING,
                    "DuckDB needed more than its %d MiB budget for the batch of %d account(s) (%s); loading it %s",
                    budget // _MiB,
                    len(batch.account_ids),
                    str(exc).splitlines()[0],
                    "again with twice the headroom" if attempt == 0 else "without the cap",
                )
        self._transaction(batch, compact)

    def load_budget(self, batch: StagedBatch) -> int | None:
        """The memory cap, in bytes, that a load of ``batch`` would run under now (None: uncapped)."""
        if not self._budgeted or self._index_bytes is None:
            return None
        staged = sum(table.nbytes for table in batch.tables.values())
        headroom = max(self._headroom_min, _HEADROOM_PER_STAGED_BYTE * staged)
        return int(self._index_bytes + self._headroom_scale * headroom)

    def _transaction(self, batch: StagedBatch, compact: bool, *, memory_limit: int | None = None) -> None:
        con = self.con
        try:
            if memory_limit is not None:
                con.execute(f"SET memory_limit = '{int(memory_limit)}B'")
            if not compact:
                # The commit's checkpoint would merge the tables' partly filled row groups, rewriting
                # the batches before it each time: 7.0 of 10.8 s on 1,000 x 200 in batches of 100.
                con.execute("SET max_vacuum_tasks = 0")
            con.begin()
            try:
                for name, table in batch.tables.items():
                    con.register(name, table)
                _refuse_duplicate_keys(con, batch)
                appending = only_appends(batch, lambda query: bool(con.execute(query[0], list(query[1])).fetchall()[0][0]))
                for sql, params in load_statements(batch, analyze=False, appending=appending):
                    con.execute(sql, list(params))
                if self._budgeted:
                    self._index_bytes = max(self._index_bytes or 0, _index_bytes(con))
                con.commit()
            except BaseException:
                _rollback(con)
                raise
            finally:
                for name in batch.tables:
                    con.unregister(name)
        finally:
            if memory_limit is not None:
                con.execute("RESET memory_limit")
            if not compact:
                con.execute("RESET max_vacuum_tasks")

    def _run_in_transaction(self, statements: Sequence[Statement]) -> None:
        con = self.con
        con.begin()
        try:
            for sql, params in statements:
                con.execute(sql, list(params))
            con.commit()
        except BaseException:
            _rollback(con)
            raise

    def _connection_lost(self, exc: Exception) -> bool:
        # FatalException: DuckDB invalidated the database (e.g. a checkpoint's write failed) and refuses
        # every statement until it is reopened. ConnectionException: a reopen after that failed.
        return isinstance(exc, (duckdb.FatalException, duckdb.ConnectionException))

    def _reconnect(self) -> None:
        lost = self.con
        try:
            lost.close()  # first: while a connection is open, connecting again reuses the invalid database
        except duckdb.Error:
            pass
        self._index_bytes = None  # the new database instance loads its indexes afresh
        try:
            self._con = self._open()
        except (WarehouseError, duckdb.Error) as exc:  # busy too: the run goes on archiving, later loads retry
            raise WarehouseUnavailable(f"cannot reopen DuckDB warehouse {self.url} after a fatal error: {exc}") from exc

    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


# Tables left without an ART primary key (migrations 003, 004): the load checks their keys itself.
UNKEYED_TABLES = (MODEL_SNAPSHOTS, MODEL_METRIC_LISTS)


def _refuse_duplicate_keys(con: duckdb.DuckDBPyConnection, batch: StagedBatch) -> None:
    for spec in UNKEYED_TABLES:
        found = con.execute(duplicate_key_sql(spec)).fetchall()
        if found:
            *key, count = found[0]
            named = ", ".join(f"{n}={v!r}" for n, v in zip(spec.primary_key, key, strict=False))
            raise WarehouseError(
                f"{spec.name}: the batch of account(s) {', '.join(batch.account_ids)} holds the key ({named}) {count} times"
            )


def _index_bytes(con: duckdb.DuckDBPyConnection) -> int:
    ((used,),) = con.execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'ART_INDEX'").fetchall()
    return int(used)


_OUT_OF_MEMORY = re.compile(r"out of memory|failed to pin block|could not allocate|failed to allocate", re.IGNORECASE)


def _out_of_memory(exc: duckdb.Error) -> bool:
    """DuckDB ran out of memory; inside COMMIT that comes as a TransactionException ("Failed to commit: ...")."""
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.TransactionException) and _OUT_OF_MEMORY.search(str(exc)) is not None
    )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if a failed statement or commit left one."""
    try:
        con.rollback()
    except duckdb.TransactionException:
        pass


def _connect(path: str, busy_timeout_s: float, config: dict[str, str | bool | int | float | list[str]]) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + busy_timeout_s
    delays = iter(_BUSY_DELAYS_S)
    while True:
        try:
            return duckdb.connect(path, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise WarehouseError(f"cannot open DuckDB warehouse {path}: {exc}") from exc
            delay = next(delays, 2.0)
            if time.monotonic() + delay > deadline:
                raise WarehouseBusy(
                    f"DuckDB warehouse {path} is locked by another process (another nugen-etl run "
                    f"or an open client) and stayed locked for {busy_timeout_s:g} s; "
                    f"try again when it is done. DuckDB said: {exc}"
                ) from exc
            time.sleep(delay)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open DuckDB warehouse {path}: {exc}") from exc
