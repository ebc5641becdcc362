"""The PostgreSQL warehouse: binary COPY from Arrow into temporary staging tables, set-based upserts, advisory locks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pyarrow as pa
from psycopg import errors as pg_errors

from nugen_etl.errors import WarehouseError, WarehouseUnavailable
from nugen_etl.warehouse import migrations, pg_binary
from nugen_etl.warehouse.base import Warehouse, lock_key
from nugen_etl.warehouse.load_sql import SCHEMA, SLOT_TABLES, insert_slot_sql, load_statements, only_appends
from nugen_etl.warehouse.rollups import Statement
from nugen_etl.warehouse.staging import StagedBatch, staging_name

_MIGRATION_LOCK = lock_key("nugen_etl", "migrate")
_SLOT_INSERTS = {insert_slot_sql(spec): spec for spec in SLOT_TABLES}
_SLOT_STAGING = {staging_name(spec.name) for spec in SLOT_TABLES}
_LOAD_ATTEMPTS = 3  # a deadlock between two concurrent batches is retried, then reported

# Arrow type -> PostgreSQL type name for binary COPY.
_PG_TYPES = {
    pa.string(): "text",
    pa.date32(): "date",
    pa.int64(): "int8",
    pa.int32(): "int4",
    pa.float64(): "float8",
    pa.bool_(): "bool",
}
COPY_CHUNK_ROWS = 4096  # rows per binary COPY write (a 48,000-row day held whole costs ~30 MiB more)
# A "?" placeholder outside quoted literals/identifiers, or a literal "%" to escape.
_QMARK_TOKENS = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|(\?)|(%)""")


class PostgresWarehouse(Warehouse):
    """``nugen.*`` on a PostgreSQL server (psycopg 3), session time zone UTC.

    Credentials: the URL, the ``password`` argument, or libpq's ``PGPASSWORD`` / ``.pgpass``.
    The password never appears in messages or ``repr``.
    """

    engine = "postgresql"
    # Loaded in turn: overlapped, a live run of 2,000 accounts peaked at 1.52x the 10-account RSS (1.43x
    # in turn), past the 1.5x memory target.

    def __init__(self, url: str, *, password: str | None = None, connect_timeout_s: int = 10) -> None:
        super().__init__(url)
        extra: dict[str, Any] = {"connect_timeout": connect_timeout_s, "application_name": "nugen-etl"}
        if password is not None:
            extra["password"] = password

        def connect() -> psycopg.Connection:  # a closure, so the password is in no attribute or repr
            try:
                conn = psycopg.connect(url, autocommit=True, **extra)
                conn.execute("SET TIME ZONE 'UTC'")
                # The load's statements each touch a few thousand rows, but their cost estimates (a
                # per-row subquery over a history of runs) pass jit_above_cost: compiling them took
                # ~0.2 s a slot at 1 M runs, for statements that run in milliseconds.
                conn.execute("SET jit = off")
                return conn
            except psycopg.Error as exc:
                raise WarehouseError(
                    f"cannot connect to PostgreSQL warehouse {self.url}: {_redact(str(exc), password, urlsplit(url).password)}"
                ) from None

        self._connect = connect
        self._conn: psycopg.Connection | None = connect()

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None:
            raise WarehouseError(f"warehouse {self.url} is closed")
        return self._conn

    def migrate(self) -> list[str]:
        """Apply pending migrations under a session advisory lock: concurrent callers queue up."""
        conn = self.conn
        done: list[str] = []
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
            try:
                with conn.transaction():
                    conn.execute(migrations.read_bootstrap())
                applied = [v for (v,) in conn.execute("SELECT version FROM nugen.schema_migrations")]
                for migration in migrations.pending(migrations.discover(self.engine), applied):
                    try:
                        with conn.transaction():
                            conn.execute(migration.sql)
                            for sql, params in migrations.follow_ups(migration):
                                _execute(conn, sql, params)
                            conn.execute(
                                "INSERT INTO nugen.schema_migrations (version, applied_at) VALUES (%s, now())", [migration.version]
                            )
                    except psycopg.Error as exc:
                        raise WarehouseError(f"migration {migration.source} failed in {self.url}: {exc}") from exc
                    done.append(migration.version)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK])
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot migrate {self.url}: {exc}") from exc
        return done

    def _load_staged(self, batch: StagedBatch, compact: bool) -> None:  # noqa: ARG002 - PostgreSQL's autovacuum tidies
        for attempt in range(1, _LOAD_ATTEMPTS + 1):
            try:
                with self.conn.transaction():
                    self._load_in_transaction(batch)
                return
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _LOAD_ATTEMPTS:
                    raise

    def _load_in_transaction(self, batch: StagedBatch) -> None:
        with self.conn.cursor() as cur:
            for name, table in batch.tables.items():
                if name not in _SLOT_STAGING:
                    _copy_staging(cur, name, table)
            cur.execute("ANALYZE stg_slot_keys")  # so the slot delete plans an index scan
            # Two loads of the same (account, slot) serialize here; the later one replaces the first.
            keys = sorted({lock_key("nugen_etl", "slot", a, s.isoformat()) for a, s in batch.slot_keys})
            cur.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [keys])
            appending = only_appends(batch, lambda query: _fetch_one(cur, *query))
            for sql, params in load_statements(batch, appending=appending):
                spec = _SLOT_INSERTS.get(sql)
                if spec is None:
                    _execute(cur, sql, params)
                else:  # the slot's rows go straight into the table: one pass instead of two
                    _copy_rows(cur, f"{SCHEMA}.{spec.name}", batch.tables[staging_name(spec.name)])

    def _run_in_transaction(self, statements: Sequence[Statement]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            for sql, params in statements:
                _execute(cur, sql, params)

    def _connection_lost(self, exc: Exception) -> bool:
        # The server ended the session (restart, failover, pg_terminate_backend) or the network
        # dropped it: psycopg marks the connection closed. A query error leaves it open.
        return isinstance(exc, psycopg.OperationalError) and self._conn is not None and self._conn.closed

    def _reconnect(self) -> None:
        try:
            conn = self._connect()
        except WarehouseError as exc:
            raise WarehouseUnavailable(f"lost the connection and cannot reconnect: {exc}") from None
        self.conn.close()
        self._conn = conn

    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query; ``?`` placeholders are translated to psycopg's ``%s``."""
        with self.conn.cursor() as cur:
            if params:
                cur.execute(qmark_to_pyformat(sql), list(params))
            else:
                cur.execute(sql)
            return cur.fetchall() if cur.description is not None else []

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _execute(cur: psycopg.Cursor | psycopg.Connection, sql: str, params: Sequence[Any]) -> None:
    """Run a statement written with ``?`` placeholders."""
    if params:
        cur.execute(qmark_to_pyformat(sql), list(params))
    else:
        cur.execute(sql)


def _fetch_one(cur: psycopg.Cursor, sql: str, params: Sequence[Any]) -> bool:
    """The boolean a one-row, one-column query answers."""
    _execute(cur, sql, params)
    return bool(cur.fetchall()[0][0])


def _copy_staging(cur: psycopg.Cursor, name: str, table: pa.Table) -> None:
    """Create temporary table ``name`` shaped like ``table`` and copy the rows in."""
    columns = ", ".join(f"{field.name} {_pg_type(field.type)}" for field in table.schema)
    cur.execute(f"CREATE TEMPORARY TABLE {name} ({columns}) ON COMMIT DROP")
    _copy_rows(cur, name, table)


def _copy_rows(cur: psycopg.Cursor, target: str, table: pa.Table) -> None:
    """COPY ``table``'s rows into ``target`` (its columns by name) in PostgreSQL's binary format,
    ``COPY_CHUNK_ROWS`` rows at a time (``pg_binary``: Arrow and numpy kernels, no Python object per
    value). The server stores the values as sent: no text parsing of timestamps, doubles or arrays,
    which was half its cost of a load; NaN and infinities need no special path."""
    if table.num_rows == 0:
        return
    with cur.copy(f"COPY {target} ({', '.join(table.column_names)}) FROM STDIN (FORMAT BINARY)") as copy:
        for chunk in pg_binary.copy_chunks(table, COPY_CHUNK_ROWS):
            copy.write(chunk)


def _pg_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz"
    if pa.types.is_list(arrow_type):
        return _pg_type(arrow_type.value_type) + "[]"
    try:
        return _PG_TYPES[arrow_type]
    except KeyError:
        raise WarehouseError(f"no PostgreSQL type for Arrow type {arrow_type}") from None


def qmark_to_pyformat(sql: str) -> str:
    """Translate ``?`` placeholders to ``%s`` (and escape ``%``), leaving quoted text alone.

    >>> qmark_to_pyformat("SELECT * FROM t WHERE a = ? AND b LIKE 'x?%'")
    "SELECT * FROM t WHERE a = %s AND b LIKE 'x?%%'"
    """

    def swap(match: re.Match[str]) -> str:
        quoted, qmark, _percent = match.groups()
        if quoted is not None:
            return quoted.replace("%", "%%")
        return "%s" if qmark else "%%"

    return _QMARK_TOKENS.sub(swap, sql)


def _redact(message: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
