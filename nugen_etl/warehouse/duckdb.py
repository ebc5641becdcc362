"""The embedded DuckDB warehouse: one file, one writer process at a time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from nugen_etl.errors import WarehouseBusy, WarehouseError
from nugen_etl.warehouse import migrations
from nugen_etl.warehouse.base import StagedBatch, Warehouse, load_statements

_BUSY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0)  # ~10 s before giving up


class DuckDBWarehouse(Warehouse):
    """``nugen.*`` in a DuckDB file (or ``:memory:``), session time zone UTC, DuckDB's memory capped at
    ``memory_limit`` when given (beyond it DuckDB evicts cached blocks and spills to ``<file>.tmp``).

    DuckDB lets one process open a file for writing; if another holds it, opening retries for
    about ``busy_timeout_s`` seconds and then raises ``WarehouseBusy``.
    """

    engine = "duckdb"

    def __init__(self, path: str, *, url: str | None = None, busy_timeout_s: float = 10.0,
                 memory_limit: str | None = None) -> None:
        super().__init__(url or f"duckdb:///{path}")
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        config = {"memory_limit": memory_limit} if memory_limit else {}
        self._con: duckdb.DuckDBPyConnection | None = _connect(path, busy_timeout_s, config)
        self._con.execute("SET TimeZone = 'UTC'")
        # A scheduled job's log is no terminal: DuckDB's progress bar would print into it on long statements.
        self._con.execute("SET enable_progress_bar_print = false")

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
                con.execute("INSERT INTO nugen.schema_migrations (version, applied_at) "
                            "VALUES (?, current_timestamp)", [migration.version])
                con.commit()
            except duckdb.Error as exc:
                con.rollback()
                raise WarehouseError(f"migration {migration.source} failed in {self.url}: {exc}") from exc
            done.append(migration.version)
        return done

    def _load_staged(self, batch: StagedBatch) -> None:
        con = self.con
        con.begin()
        try:
            for name, table in batch.tables.items():
                con.register(name, table)
            for statement in load_statements():
                con.execute(statement)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            for name in batch.tables:
                con.unregister(name)

    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _connect(path: str, busy_timeout_s: float, config: dict[str, str]) -> duckdb.DuckDBPyConnection:
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
                    f"try again when it is done. DuckDB said: {exc}") from exc
            time.sleep(delay)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open DuckDB warehouse {path}: {exc}") from exc
