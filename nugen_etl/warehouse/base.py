"""The warehouse interface, the batch staging both engines share, and the set-based load SQL.

A load batch becomes a handful of Arrow staging tables (``stg_<table>``, ``stg_slot_keys``,
``stg_account_runs``); each engine only decides how they reach the server (DuckDB registers
them, PostgreSQL COPYs them into temporary tables). The statements that move staging rows
into ``nugen.*`` are built here from the declared schemas, so both engines run the same SQL.
Identifiers come from ``nugen_etl.schemas`` only; values are never formatted into SQL.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nugen_etl import schemas
from nugen_etl.errors import WarehouseError
from nugen_etl.records import (
    SUCCESS_OUTCOMES,
    AccountRun,
    Outcome,
    SlotLoad,
    as_utc,
    gather,
    latest_per_slot,
    table_rows,
)
from nugen_etl.redaction import mask_url
from nugen_etl.schemas import TableSpec
from nugen_etl.warehouse import rollups
from nugen_etl.warehouse.metric_lists import to_metric_lists
from nugen_etl.warehouse.rollup_batch import batch_rollups
from nugen_etl.warehouse.rollups import Statement

SCHEMA = "nugen"
# The tables whose rows belong to one (account, slot), as the warehouse stores them.
SLOT_TABLES = (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRIC_LISTS, schemas.QUARANTINE)
# Tables a data-bearing SlotLoad may carry, by name. model_metric_lists is optional: flattening writes it
# beside model_metrics (the same values, one row per snapshot); otherwise the load computes it.
DATA_TABLES = {spec.name: spec for spec in (*schemas.SLOT_TABLES, schemas.MODEL_METRIC_LISTS, schemas.EVALUATIONS)}
_LISTS, _LONG = schemas.MODEL_METRIC_LISTS.name, schemas.MODEL_METRICS.name
SLOT_KEYS_SCHEMA = pa.schema([("account_id", pa.string()), ("snapshot_at", schemas.TS)])
_SUCCESS = tuple(sorted(o.value for o in SUCCESS_OUTCOMES))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)


class Warehouse(ABC):
    """A migrated set of ``nugen.*`` tables and views that accepts batches of slot loads.

    Use as a context manager, or call :meth:`close`. ``fetch_all`` takes ``?`` placeholders
    on every engine.
    """

    engine: str

    def __init__(self, url: str) -> None:
        self._display_url = mask_url(url)

    @property
    def url(self) -> str:
        """The URL this warehouse was opened with, password masked."""
        return self._display_url

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply the pending versioned migrations; return the versions applied (empty when current)."""

    def load(self, loads: Sequence[SlotLoad]) -> None:
        """Write a batch of slot loads in one transaction: all of it or none of it.

        Per (account, slot) with tables: the slot's rows of model_snapshots, model_metrics (stored
        as model_metric_lists) and quarantined_records are replaced; evaluations are upserted (newest ``last_seen_at`` wins,
        first/last seen widen). Every load upserts its ``account_runs`` row, except that a failure
        never overwrites a recorded success. Raises ``WarehouseError`` naming the batch's accounts.

        If the connection is lost during the load (PostgreSQL restarted or ended the session; DuckDB
        invalidated the database after a fatal error), it is opened again and the batch loaded once
        more: a slot's load replaces the slot, so loading it twice is safe even when the lost
        commit did land. If it cannot be opened again, ``WarehouseUnavailable`` is raised and the
        next load tries again.
        """
        if not loads:
            return
        batch = stage_batch(loads)
        try:
            self._load_reconnecting(batch)
        except WarehouseError:
            raise
        except Exception as exc:  # the driver's error, re-raised with the batch's context
            raise WarehouseError(
                f"{self.engine} warehouse refused the load of account(s) {', '.join(batch.account_ids)}: {type(exc).__name__}: {exc}"
            ) from exc

    def _load_reconnecting(self, batch: StagedBatch) -> None:
        try:
            self._load_staged(batch)
        except Exception as exc:
            if not self._connection_lost(exc):
                raise
            log.warning(
                "%s warehouse %s lost its connection during the load of %d account(s) (%s: %s); reconnecting and loading the batch again",
                self.engine,
                self.url,
                len(batch.account_ids),
                type(exc).__name__,
                " ".join(str(exc).split()),
            )
            self._reconnect()
            self._load_staged(batch)

    def rebuild_rollups(self) -> None:
        """Rebuild every rollup the BI views read from model_snapshots and account_runs, in one
        transaction (after rows reached those tables by other means than ``load``)."""
        try:
            self._run_in_transaction(rollups.rebuild_statements())
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(f"{self.engine} warehouse {self.url}: rebuilding the rollups failed: {type(exc).__name__}: {exc}") from exc

    def record_pending_loads(self, loads: Sequence[tuple[str, datetime, datetime, str]]) -> None:
        """Make ``nugen.pending_loads`` hold exactly ``loads`` (account_id, snapshot_at, since, reason),
        in one transaction (``account_health`` shows them)."""
        upsert = (
            "INSERT INTO nugen.pending_loads AS t (account_id, snapshot_at, since, reason) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, snapshot_at) DO UPDATE SET since = excluded.since, reason = excluded.reason"
        )
        try:
            self._run_in_transaction([("DELETE FROM nugen.pending_loads", ()), *[(upsert, load) for load in loads]])
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(
                f"{self.engine} warehouse {self.url}: recording the pending loads failed: {type(exc).__name__}: {exc}"
            ) from exc

    @abstractmethod
    def _run_in_transaction(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` (``?`` placeholders) in one transaction."""

    @contextmanager
    def loading_in_bulk(self) -> Iterator[None]:
        """A scope for many large loads in a row (a backfill): an engine may defer work that each
        load would otherwise repeat, as long as every committed load stays durable."""
        yield

    @abstractmethod
    def _load_staged(self, batch: StagedBatch) -> None: ...

    @abstractmethod
    def _connection_lost(self, exc: Exception) -> bool:
        """Whether ``exc`` means the connection is gone and only a new one can go on."""

    @abstractmethod
    def _reconnect(self) -> None:
        """Drop the lost connection and open a new one; ``WarehouseUnavailable`` if that fails."""

    @abstractmethod
    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query and return all rows as tuples.

        Placeholders are ``?`` on every engine (DuckDB's native style; the PostgreSQL engine
        rewrites them to ``%s`` outside quoted text, so PostgreSQL's own ``?`` JSON operators
        cannot be used in a query that has parameters). Timestamps come back in UTC.
        """

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for an advisory lock on ``parts``."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- staging ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedBatch:
    """A validated batch: staging tables keyed by their staging name, plus its slot keys."""

    account_ids: tuple[str, ...]  # sorted, for messages
    slot_keys: tuple[tuple[str, datetime], ...]  # every (account, slot) in the batch, sorted
    data_days: tuple[date, date] | None  # UTC dates of the earliest and latest slot carrying tables
    tables: dict[str, pa.Table]  # "stg_slot_keys", "stg_account_runs", "stg_<warehouse table>", "stg_rollup_*"


def staging_name(table: str) -> str:
    return f"stg_{table}"


def stage_batch(loads: Sequence[SlotLoad]) -> StagedBatch:
    """Validate each load against the declared schemas and concatenate the batch (pure)."""
    chosen = latest_per_slot(loads)
    keys = list(chosen)
    account_ids = tuple(sorted({account for account, _ in keys}))

    data_keys = [key for key in keys if chosen[key].tables is not None]
    staged = None
    lists_given = bool(data_keys) and all(_LISTS in chosen[key].tables for key in data_keys)  # type: ignore[operator]
    if lists_given:
        # Flattening wrote the lists the warehouse stores: the long rows are not staged, only counted.
        staged = _stage_checked_as_batch(chosen, data_keys, skip=_LONG)
        long_rows = sum(table_rows(chosen[key].tables or {}, _LONG) for key in data_keys)
        if staged is not None and not _lists_hold(staged[staging_name(_LISTS)], long_rows):
            staged = None
    if staged is None:
        staged = _stage_checked_as_batch(chosen, data_keys)
    if staged is None:  # something is off: check slot by slot, which names the offending slot
        parts: dict[str, list[pa.Table]] = {name: [] for name in DATA_TABLES}
        for key in data_keys:
            for name, table in _check_tables(chosen[key], key).items():
                parts[name].append(table)
        staged = {
            staging_name(name): (pa.concat_tables(parts[name]) if parts[name] else DATA_TABLES[name].schema.empty_table())
            for name in DATA_TABLES
        }
    long = staged.pop(staging_name(_LONG), None)
    if long is not None:  # the lists come from the long rows unless given for every slot and holding them
        given = staged.pop(staging_name(_LISTS))
        if not (lists_given and _lists_hold(given, long.num_rows)):
            try:
                given = to_metric_lists(long)
            except WarehouseError as exc:
                raise WarehouseError(f"the batch of account(s) {', '.join(account_ids)}: {exc}") from None
        staged[staging_name(_LISTS)] = given
    staged["stg_slot_keys"] = pa.Table.from_pylist([{"account_id": a, "snapshot_at": s} for a, s in data_keys], schema=SLOT_KEYS_SCHEMA)
    staged[staging_name(schemas.ACCOUNT_RUNS.name)] = _runs_table([chosen[k].run for k in keys], account_ids)
    evaluations = staging_name(schemas.EVALUATIONS.name)
    staged[evaluations] = upsert_candidates(staged[evaluations])
    own = batch_rollups(staged[staging_name(schemas.MODEL_SNAPSHOTS.name)])
    staged["stg_rollup_days"], staged["stg_rollup_daily"] = own.days, own.daily
    staged["stg_rollup_status_changes"] = own.status_changes
    days = sorted(as_utc(slot).date() for _, slot in data_keys)
    return StagedBatch(account_ids, tuple(keys), (days[0], days[-1]) if days else None, staged)


def _lists_hold(lists: pa.Table, long_rows: int) -> bool:
    """Whether the given lists hold as many values as the long rows (else they are computed from those)."""
    lengths = pc.sum(pc.list_value_length(lists["metric_names"])).as_py() or 0
    values = pc.sum(pc.list_value_length(lists["metric_values"])).as_py() or 0
    return lengths == values == long_rows


def _stage_checked_as_batch(
    chosen: dict[tuple[str, datetime], SlotLoad], data_keys: list[tuple[str, datetime]], skip: str | None = None
) -> dict[str, pa.Table] | None:
    """The staging tables when every slot's tables already have exactly the declared schemas and
    pass the checks of ``_conform`` run once over the whole batch (one kernel per column per batch
    instead of per slot), ``skip`` left out; None when any does not, so the caller checks slot by slot."""
    slot_tables = [chosen[key].tables for key in data_keys]
    if any(not tables.keys() <= DATA_TABLES.keys() for tables in slot_tables):  # type: ignore[union-attr]
        return None
    accounts = pa.array([a for a, _ in data_keys], pa.string())
    slots = pa.array([_micros(s) for _, s in data_keys], pa.int64())
    staged = {}
    for name, spec in DATA_TABLES.items():
        if name == skip:
            continue
        parts = gather(slot_tables, name)  # type: ignore[arg-type]
        if any(not part.schema.equals(spec.schema) for part in parts):
            return None
        parts = [part for part in parts if part.num_rows]
        if not parts:
            staged[staging_name(name)] = spec.schema.empty_table()
            continue
        table = _fewer_chunks(pa.concat_tables(parts))
        counts = [table_rows(tables, name) for tables in slot_tables]  # type: ignore[arg-type]
        owner = pa.array(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
        if not pc.all(pc.equal(table["account_id"], accounts.take(owner))).as_py():
            return None
        if "snapshot_at" in spec.schema.names and not pc.all(pc.equal(table["snapshot_at"], slots.take(owner).view(schemas.TS))).as_py():
            return None
        if any(pa.types.is_string(field.type) and may_hold_nul(table[field.name]) for field in spec.schema):
            return None
        staged[staging_name(name)] = table
    return staged


# Below this many rows per chunk on average the staged table is copied into one: an engine scans
# Arrow a chunk at a time and pays per chunk (a live batch's 50-model answers inserted into DuckDB
# 6x slower as 100 chunks than as one), while a copy costs a memcpy.
MIN_ROWS_PER_CHUNK = 2048


def _fewer_chunks(table: pa.Table) -> pa.Table:
    chunks = table.column(0).num_chunks if table.num_columns else 0
    return table.combine_chunks() if chunks > 1 and table.num_rows < MIN_ROWS_PER_CHUNK * chunks else table


def may_hold_nul(column: pa.ChunkedArray | pa.Array) -> bool:
    """False when no string of ``column`` holds a NUL character; True when one may (the caller then
    checks exactly). Reads the bytes the strings span in the character buffers, without copying:
    ~50x faster than a per-string kernel."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        _, offsets, data = chunk.buffers()[:3]
        if data is None or len(chunk) == 0:
            continue
        width = np.dtype(np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
        start, stop = (
            int(np.frombuffer(offsets, width, count=1, offset=i * width.itemsize)[0]) for i in (chunk.offset, chunk.offset + len(chunk))
        )
        if stop > start and np.frombuffer(data, np.uint8, count=stop - start, offset=start).min() == 0:
            return True
    return False


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _check_tables(load: SlotLoad, key: tuple[str, datetime]) -> dict[str, pa.Table]:
    account_id, snapshot_at = key
    assert load.tables is not None
    unknown = sorted(set(load.tables) - set(DATA_TABLES))
    if unknown:
        raise WarehouseError(f"account {account_id}: unknown table(s) in the slot load: {unknown}")
    checked = {}
    for name, spec in DATA_TABLES.items():
        table = load.tables.get(name)
        checked[name] = spec.schema.empty_table() if table is None else _conform(table, spec, account_id, snapshot_at)
    return checked


def _conform(table: pa.Table, spec: TableSpec, account_id: str, snapshot_at: datetime) -> pa.Table:
    where = f"account {account_id}, slot {snapshot_at.isoformat()}, table {spec.name}"
    names = set(table.column_names)
    missing = [n for n in spec.schema.names if n not in names]
    extra = sorted(names - set(spec.schema.names))
    if missing or extra:
        raise WarehouseError(f"{where}: columns differ from the declared schema (missing {missing}, unexpected {extra})")
    try:
        table = table.select(spec.schema.names).cast(spec.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise WarehouseError(f"{where}: cannot cast to the declared schema: {exc}") from exc
    if table.num_rows == 0:
        return table
    if not pc.all(pc.equal(table["account_id"], account_id)).as_py():
        raise WarehouseError(f"{where}: rows of another account in this slot's data")
    if "snapshot_at" in names and not pc.all(pc.equal(table["snapshot_at"], pa.scalar(snapshot_at, schemas.TS))).as_py():
        raise WarehouseError(f"{where}: rows of another slot in this slot's data")
    for field in spec.schema:
        if pa.types.is_string(field.type) and pc.any(pc.match_substring(table[field.name], "\x00")).as_py():
            # PostgreSQL text cannot hold NUL; refuse on every engine rather than alter the value.
            raise WarehouseError(f"{where}: column {field.name} contains a NUL character, which the warehouse cannot store")
    return table


def upsert_candidates(evaluations: pa.Table) -> pa.Table:
    """The staged evaluations the upsert can pick from: per key only the newest sightings (every row
    if none has a ``last_seen_at``), each carrying the key's earliest ``first_seen_at``.

    ``upsert_evaluations_sql`` reduces the batch to one row per key the same way: the row with the
    newest ``last_seen_at`` (ties: the greatest model_id, compared by the engine), first/last seen
    widened over all of the key's rows. Doing the first cut here sends a day's batch ~24x fewer
    rows (a key is seen once a slot) and gives the same rows: the engine still breaks the ties.
    """
    if evaluations.num_rows < 2:
        return evaluations
    key = list(schemas.EVALUATIONS.primary_key)
    spans = evaluations.group_by(key, use_threads=False).aggregate([("first_seen_at", "min"), ("last_seen_at", "max")])
    if spans.num_rows == evaluations.num_rows:
        return evaluations
    joined = evaluations.join(spans, key, use_threads=False)
    newest = pc.or_kleene(pc.equal(joined["last_seen_at"], joined["last_seen_at_max"]), pc.is_null(joined["last_seen_at_max"]))
    kept = joined.filter(newest)
    kept = kept.set_column(kept.schema.get_field_index("first_seen_at"), "first_seen_at", kept["first_seen_at_min"])
    return kept.select(schemas.EVALUATIONS.schema.names).cast(schemas.EVALUATIONS.schema)


def _runs_table(runs: list[AccountRun], account_ids: tuple[str, ...]) -> pa.Table:
    try:
        rows = [
            {
                "account_id": r.account_id,
                "snapshot_at": as_utc(r.snapshot_at),
                "outcome": Outcome(r.outcome).value,
                "http_status": r.http_status,
                "model_count": r.model_count,
                "quarantined_count": r.quarantined_count,
                "coerced_count": r.coerced_count,
                "attempts": r.attempts,
                "fetched_at": None if r.fetched_at is None else as_utc(r.fetched_at),
                "error": r.error,
            }
            for r in runs
        ]
        return pa.Table.from_pylist(rows, schema=schemas.ACCOUNT_RUNS.schema)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise WarehouseError(f"account run(s) of {', '.join(account_ids)} do not fit account_runs: {exc}") from exc


# --- the set-based statements both engines run against the staging tables --------------------


def _cols(spec: TableSpec, prefix: str = "") -> str:
    return ", ".join(prefix + n for n in spec.schema.names)


def delete_slot_sql(spec: TableSpec) -> str:
    """Delete every row of the batch's data-bearing slots (uses the (account_id, snapshot_at) index)."""
    return f"DELETE FROM {SCHEMA}.{spec.name} WHERE (account_id, snapshot_at) IN (SELECT account_id, snapshot_at FROM stg_slot_keys)"


def insert_slot_sql(spec: TableSpec) -> str:
    return f"INSERT INTO {SCHEMA}.{spec.name} ({_cols(spec)}) SELECT {_cols(spec)} FROM {staging_name(spec.name)}"


def upsert_evaluations_sql() -> str:
    """Upsert evaluations: fields from the newest sighting, first/last seen widened.

    The batch is first reduced to one row per key (ON CONFLICT cannot touch a row twice).
    Rows are inserted in key order so concurrent loads lock keys in the same order.
    """
    spec = schemas.EVALUATIONS
    pk = ", ".join(spec.primary_key)
    widened = {"first_seen_at": "min_first_seen_at", "last_seen_at": "max_last_seen_at"}
    select = ", ".join(widened.get(n, n) for n in spec.schema.names)
    newer = "(t.last_seen_at IS NULL OR excluded.last_seen_at >= t.last_seen_at)"
    updates = [
        f"{n} = CASE WHEN {newer} THEN excluded.{n} ELSE t.{n} END"
        for n in spec.schema.names
        if n not in spec.primary_key and n not in widened
    ]
    updates += [
        "first_seen_at = LEAST(t.first_seen_at, excluded.first_seen_at)",
        "last_seen_at = GREATEST(t.last_seen_at, excluded.last_seen_at)",
    ]
    return (
        f"INSERT INTO {SCHEMA}.{spec.name} AS t ({_cols(spec)}) "
        f"SELECT {select} FROM ("
        f" SELECT s.*,"
        f"  ROW_NUMBER() OVER (PARTITION BY {pk} ORDER BY last_seen_at DESC NULLS LAST,"
        f"   model_id DESC NULLS LAST) AS pick,"
        f"  MIN(first_seen_at) OVER (PARTITION BY {pk}) AS min_first_seen_at,"
        f"  MAX(last_seen_at) OVER (PARTITION BY {pk}) AS max_last_seen_at"
        f" FROM {staging_name(spec.name)} AS s) AS x "
        f"WHERE pick = 1 ORDER BY {pk} "
        f"ON CONFLICT ({pk}) DO UPDATE SET {', '.join(updates)}"
    )


def upsert_runs_sql() -> str:
    """Upsert account_runs by key; a non-success never replaces a stored success."""
    spec = schemas.ACCOUNT_RUNS
    pk = ", ".join(spec.primary_key)
    success = ", ".join(f"'{o}'" for o in _SUCCESS)
    updates = ", ".join(f"{n} = excluded.{n}" for n in spec.schema.names if n not in spec.primary_key)
    return (
        f"INSERT INTO {SCHEMA}.{spec.name} AS t ({_cols(spec)}) "
        f"SELECT {_cols(spec)} FROM {staging_name(spec.name)} ORDER BY {pk} "
        f"ON CONFLICT ({pk}) DO UPDATE SET {updates} "
        f"WHERE t.outcome NOT IN ({success}) OR excluded.outcome IN ({success})"
    )


def duplicate_key_sql(spec: TableSpec) -> str:
    """One key that the batch's staging rows of ``spec`` hold twice, if any (for tables whose engine
    enforces no primary key: the slot delete removed every earlier row of the batch's slots, so
    unique staging rows mean unique rows in the table)."""
    keys = ", ".join(spec.primary_key)
    return f"SELECT {keys}, count(*) FROM {staging_name(spec.name)} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1"


def load_statements(batch: StagedBatch, *, analyze: bool = True) -> list[Statement]:
    """The batch's statements in order (``?`` placeholders), for an engine to run inside one
    transaction: the slots replaced, evaluations and runs upserted, the rollups brought up to date
    (``analyze``: see ``rollups.maintenance_statements``)."""
    statements = rollups.capture_statements()
    statements += [(delete_slot_sql(spec), ()) for spec in SLOT_TABLES]
    statements += [(insert_slot_sql(spec), ()) for spec in SLOT_TABLES]
    statements += [(upsert_evaluations_sql(), ()), (upsert_runs_sql(), ())]
    first_day, last_day = batch.data_days or (None, None)
    return statements + rollups.maintenance_statements(first_day, last_day, analyze=analyze)
