"""The lake: ``model_snapshots``, ``model_metrics`` and ``account_runs`` as Delta Lake tables.

    <storage root>/model_snapshots/   Delta tables (delta-rs), partitioned by snapshot_date only
    <storage root>/model_metrics/
    <storage root>/account_runs/

Every write is one Delta commit per table that replaces exactly the rows of the given
(slot, accounts) pairs (a replace-where predicate), so a rerun of one account replaces only that
account's rows, and concurrent writers of disjoint accounts of one slot do not conflict. A commit
that conflicts anyway (``CommitFailedError``) is retried with jittered backoff, up to a bound.

Each table is always at a committed version: data files are written first, and a commit is one
atomic put-if-absent of the next log entry (a rename without replace locally, a conditional PUT on
S3). A batch is three commits: snapshots and metrics at once, then the runs.

No deltalake object exists until the first write or read: delta-rs' runtime does not survive
``fork()``, so nothing here may run in a process that later forks workers.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .. import __version__
from ..errors import NugenEtlError
from ..records import SUCCESS_OUTCOMES, AccountRun, SlotLoad, as_utc, gather, is_success, latest_per_slot
from ..schemas import LAKE_ACCOUNT_RUNS, MODEL_METRICS, MODEL_SNAPSHOTS, TableSpec
from ..storage import Storage

if TYPE_CHECKING:
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

LAKE_TABLES = (MODEL_SNAPSHOTS, MODEL_METRICS, LAKE_ACCOUNT_RUNS)
DATA_TABLES = (MODEL_SNAPSHOTS, MODEL_METRICS)  # tables a data-bearing SlotLoad carries rows for
PARTITION_COLUMN = "snapshot_date"
# Compaction sorts each day by these (z-order): a reader of one account or model skips most files.
ZORDER_COLUMNS = {
    MODEL_SNAPSHOTS.name: ["account_id", "model_key", "snapshot_at"],
    MODEL_METRICS.name: ["account_id", "model_key", "snapshot_at"],
    LAKE_ACCOUNT_RUNS.name: ["account_id", "snapshot_at"],
}
_SUCCESS = frozenset(o.value for o in SUCCESS_OUTCOMES)
# A checkpoint every 10 commits: opening a table (once per run) replays at most 10 JSON commits.
# With Delta's default of 100, a run's batch cost grew from ~70 ms to ~160-200 ms over 48 hourly
# commits before the first checkpoint; with 10 it stayed ~90 ms.
CHECKPOINT_INTERVAL = "10"
# Table properties: statistics only on the columns readers filter by (the default, the first 32
# columns, costs write time on measure columns that no query prunes by).
_STATS_COLUMNS = {
    MODEL_SNAPSHOTS.name: "account_id,model_id,snapshot_at,snapshot_date,model_key,status",
    MODEL_METRICS.name: "account_id,model_id,snapshot_at,metric,snapshot_date,model_key",
    LAKE_ACCOUNT_RUNS.name: "account_id,snapshot_at,snapshot_date,outcome",
}


class LakeError(NugenEtlError):
    """A lake write, compaction or vacuum failed."""


class LakeCommitConflict(LakeError):
    """A commit still conflicted with concurrent writers after every retry."""


class LegacyLakeLayout(LakeError):
    """The storage root holds the per-slot Parquet layout of nugen-etl 0.1, not Delta tables."""


@dataclass(frozen=True)
class LakeLocation:
    """Where the tables live: a local folder or ``s3://bucket/prefix``, plus delta-rs storage options.

    ``storage_options`` may hold credentials: they are never shown (masked repr, no logging).
    """

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The current options, asked again before each use: S3 credentials from an instance role or STS
    # expire (often within an hour), and a backfill or a long-lived worker outlives them.
    refresh: Callable[[], Mapping[str, str]] | None = field(default=None, repr=False, compare=False)

    def table_uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def options(self) -> dict[str, str] | None:
        return dict(self.storage_options) or None


@dataclass(frozen=True)
class CommitRetry:
    """Retries of a conflicting commit: ``attempts`` in all, full-jitter backoff from ``base_delay_s``."""

    attempts: int = 8
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


class Lake:
    """The three Delta tables under one root. ``metadata`` goes into every commit (with the slots)."""

    def __init__(
        self,
        location: LakeLocation,
        *,
        metadata: Mapping[str, str] | None = None,
        retry: CommitRetry | None = None,
        layout_probe: LayoutProbe | None = None,
    ) -> None:
        self.location = location
        self.metadata = {"nugen.version": __version__, **(metadata or {})}
        self.retry = retry or CommitRetry()
        self._probe = layout_probe
        self._tables: dict[str, DeltaTable] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _data_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(DATA_TABLES), thread_name_prefix="nugen-lake")
        return self._pool

    def close(self) -> None:
        """Stop the commit threads and drop the open tables (a later use opens them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._tables.clear()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def display(self) -> str:
        return self.location.root

    # --- tables -----------------------------------------------------------------------------

    def refresh_credentials(self) -> None:
        """Take the storage's current options; if they changed (rotated credentials), reopen the tables
        with them. Called before every write, read and maintenance step; cheap when nothing changed."""
        if self.location.refresh is None:
            return
        current = dict(self.location.refresh())
        if current != dict(self.location.storage_options):
            self.location = replace(self.location, storage_options=current)
            self._tables.clear()
            log.info("lake %s: storage credentials changed; reopening its tables with them", self.display)

    def table(self, spec: TableSpec) -> DeltaTable:
        """The table's DeltaTable (created empty, with its declared schema, when it does not exist)."""
        found = self._tables.get(spec.name)
        if found is None:
            found = self._tables[spec.name] = self._open_or_create(spec)
        return found

    def _open_or_create(self, spec: TableSpec) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri = self.location.table_uri(spec.name)
        try:
            return DeltaTable(uri, storage_options=self.location.options())
        except TableNotFoundError:
            pass
        if self._probe is not None:
            self._probe.refuse_legacy(spec.name)
        for attempt in range(self.retry.attempts):
            try:
                return DeltaTable.create(
                    uri,
                    spec.schema,
                    mode="ignore",
                    partition_by=[PARTITION_COLUMN],
                    name=spec.name,
                    storage_options=self.location.options(),
                    configuration={
                        "delta.dataSkippingStatsColumns": _STATS_COLUMNS[spec.name],
                        "delta.checkpointInterval": CHECKPOINT_INTERVAL,
                    },
                    commit_properties=self._commit_properties({"nugen.operation": "create"}),
                )
            except Exception as exc:  # noqa: BLE001 - two writers creating it at once: open the winner's
                if attempt + 1 == self.retry.attempts:
                    raise LakeError(f"cannot create Delta table {uri}: {type(exc).__name__}: {exc}") from exc
                time.sleep(self.retry.delay(attempt))
                try:
                    return DeltaTable(uri, storage_options=self.location.options())
                except TableNotFoundError:
                    continue
        raise AssertionError("unreachable")

    def ensure_tables(self) -> None:
        """Create the missing tables now: a step that runs before concurrent writers start (the DAG's
        plan task) spares them racing to create a table (a harmless second create commit)."""
        for spec in LAKE_TABLES:
            self.table(spec)

    def read(self, spec: TableSpec, *, version: int | None = None, filters: Any = None, columns: list[str] | None = None) -> pa.Table:
        """Rows of a table (at ``version``, or the latest), with the declared schema."""
        from deltalake import DeltaTable

        self.refresh_credentials()
        if version is None:
            dt = self.table(spec)
            dt.update_incremental()
        else:
            dt = DeltaTable(self.location.table_uri(spec.name), version=version, storage_options=self.location.options())
        dataset = dt.to_pyarrow_dataset()
        return dataset.to_table(filter=filters, columns=columns)

    # --- writes -----------------------------------------------------------------------------

    def write(self, loads: Sequence[SlotLoad], *, metadata: Mapping[str, str] | None = None) -> None:
        """One commit per table replacing the batch's rows; ``LakeError`` when a commit fails for good.

        model_snapshots/model_metrics: the rows of every data-bearing load's (account, slot) are
        replaced (a load without tables leaves them alone). account_runs: every load's run row,
        except that a failure never replaces a recorded success.
        """
        chosen = list(latest_per_slot(loads).values())
        if not chosen:
            return
        try:
            self.refresh_credentials()
            self._write(chosen, metadata)
        except LakeError:
            raise
        except Exception as exc:  # the table could not be opened or read: storage down, a broken table
            self._tables.clear()
            raise LakeError(
                f"the lake at {self.display} refused the write for {_describe(_keys(chosen))}: {type(exc).__name__}: {exc}"
            ) from exc

    def _write(self, chosen: list[SlotLoad], metadata: Mapping[str, str] | None) -> None:
        extra = {**_slot_metadata(chosen), **(metadata or {})}
        data = [load for load in chosen if load.tables is not None]
        if data:
            keys = [(ld.run.account_id, ld.run.snapshot_at) for ld in data]
            parts = {spec: gather([ld.tables for ld in data if ld.tables is not None], spec.name) for spec in DATA_TABLES}
            # The two data tables are independent commits, made at once: delta-rs encodes and commits
            # without the GIL, so the batch costs the larger of the two, not their sum (the live lake
            # stage went from ~120,000 to ~180,000 records/s). Each thread also joins its table's parts
            # (Arrow copies them without the GIL too: ~13 ms a batch of 100 single-answer slots that
            # otherwise came before both commits). The runs follow, so a run row never announces rows
            # that are not committed.
            futures = [self._data_pool().submit(self._replace_parts, spec, spec_parts, keys, extra) for spec, spec_parts in parts.items()]
            wait(futures)
            for future in futures:
                future.result()
        runs = [load.run for load in chosen]
        failed = [(r.account_id, r.snapshot_at) for r in runs if not is_success(r)]
        if failed:
            kept = self._successful_runs(failed)
            runs = [r for r in runs if is_success(r) or (r.account_id, as_utc(r.snapshot_at)) not in kept]
        if runs:
            self._replace(LAKE_ACCOUNT_RUNS, runs_table(runs), [(r.account_id, r.snapshot_at) for r in runs], extra)

    def _replace_parts(
        self, spec: TableSpec, parts: list[pa.Table], keys: Iterable[tuple[str, datetime]], metadata: Mapping[str, str]
    ) -> None:
        self._replace(spec, _concat(parts, spec), keys, metadata)

    def _replace(self, spec: TableSpec, rows: pa.Table, keys: Iterable[tuple[str, datetime]], metadata: Mapping[str, str]) -> None:
        from deltalake import WriterProperties, write_deltalake
        from deltalake.exceptions import CommitFailedError

        predicate = slots_predicate(keys)
        properties = self._commit_properties(metadata)
        writer = WriterProperties(compression="ZSTD")
        for attempt in range(self.retry.attempts):
            dt = self.table(spec)
            try:
                write_deltalake(dt, rows, mode="overwrite", predicate=predicate, writer_properties=writer, commit_properties=properties)
                return
            except CommitFailedError as exc:
                if attempt + 1 == self.retry.attempts:
                    raise LakeCommitConflict(
                        f"{spec.name}: the commit for {_describe(keys)} still conflicted with concurrent "
                        f"writers after {self.retry.attempts} attempts: {exc}"
                    ) from exc
                log.info("%s: commit conflicted (%s); retrying", spec.name, exc)
                time.sleep(self.retry.delay(attempt))
                self._tables.pop(spec.name, None)  # reopen at the newest version
            except LakeError:
                raise
            except Exception as exc:
                raise LakeError(f"{spec.name}: the write for {_describe(keys)} failed: {type(exc).__name__}: {exc}") from exc

    def _successful_runs(self, keys: Sequence[tuple[str, datetime]]) -> set[tuple[str, datetime]]:
        """Which of ``keys`` already have an ok/empty run in the lake."""
        import pyarrow.dataset as ds

        days = sorted({as_utc(s).date() for _, s in keys})
        slots = pa.array(sorted({as_utc(s) for _, s in keys}), LAKE_ACCOUNT_RUNS.schema.field("snapshot_at").type)
        flt = (
            ds.field(PARTITION_COLUMN).isin(pa.array(days, pa.date32()))
            & ds.field("snapshot_at").isin(slots)
            & ds.field("outcome").isin(pa.array(sorted(_SUCCESS)))
        )
        found = self.read(LAKE_ACCOUNT_RUNS, filters=flt, columns=["account_id", "snapshot_at"])
        return {(a, s) for a, s in zip(found["account_id"].to_pylist(), found["snapshot_at"].to_pylist(), strict=False)}

    def _commit_properties(self, metadata: Mapping[str, str]) -> Any:
        from deltalake import CommitProperties

        return CommitProperties(custom_metadata={**self.metadata, **metadata})

    # --- maintenance --------------------------------------------------------------------------

    def day_files(self, spec: TableSpec) -> dict[date, list[str]]:
        """The data files of each day partition (relative paths, sorted)."""
        self.refresh_credentials()
        dt = self.table(spec)
        dt.update_incremental()
        actions = pa.table(dt.get_add_actions(flatten=True))
        days: dict[date, list[str]] = {}
        if actions.num_rows == 0:
            return days
        column = f"partition.{PARTITION_COLUMN}"
        for path, day in zip(actions["path"].to_pylist(), actions[column].to_pylist(), strict=False):
            day = day if isinstance(day, date) else date.fromisoformat(str(day))
            days.setdefault(day, []).append(path)
        return {d: sorted(p) for d, p in sorted(days.items())}

    def compact_day(self, day: date, *, target_size: int | None = None) -> dict[str, dict[str, Any]]:
        """Rewrite one day of every table into few files, z-ordered by account, model and time."""
        self.refresh_credentials()
        metrics = {}
        for spec in LAKE_TABLES:
            dt = self.table(spec)
            dt.update_incremental()
            metrics[spec.name] = dt.optimize.z_order(
                ZORDER_COLUMNS[spec.name],
                partition_filters=[(PARTITION_COLUMN, "=", day.isoformat())],
                target_size=target_size,
                writer_properties=_zstd(),
                commit_properties=self._commit_properties({"nugen.operation": "compact", "nugen.day": day.isoformat()}),
            )
        return metrics

    def vacuum(self, *, retention_hours: float) -> dict[str, int]:
        """Delete files no version within ``retention_hours`` needs; returns the count per table."""
        self.refresh_credentials()
        removed = {}
        for spec in LAKE_TABLES:
            dt = self.table(spec)
            dt.update_incremental()
            deleted = dt.vacuum(
                retention_hours=int(retention_hours),
                dry_run=False,
                enforce_retention_duration=False,
                commit_properties=self._commit_properties({"nugen.operation": "vacuum"}),
            )
            removed[spec.name] = len(deleted)
        return removed


class LayoutProbe:
    """Refuses a table folder that holds nugen-etl 0.1's per-slot Parquet files (``list_folder``
    lists one folder level: (sub-folders, files))."""

    def __init__(self, list_folder: Any, display: str) -> None:
        self._list, self._display = list_folder, display

    def is_legacy(self, name: str) -> bool:
        folders, files = self._list(name)
        return "_delta_log" not in folders and any(f.startswith(f"{PARTITION_COLUMN}=") for f in folders)

    def refuse_legacy(self, name: str) -> None:
        if self.is_legacy(name):
            raise LegacyLakeLayout(
                f"{self._display}/{name} holds the per-slot Parquet files of nugen-etl 0.1, not a Delta "
                f"table, and the lake cannot be written there. Run 'nugen-etl upgrade-lake --config FILE': "
                f"it moves the old folders to {self._display}/{LEGACY_DIR}/ (nothing is deleted) and "
                f"rebuilds the Delta tables from the raw archive (docs/lake.md, 'Upgrading')."
            )


LEGACY_DIR = "legacy-parquet"


def open_lake(storage: Storage, *, metadata: Mapping[str, str] | None = None, retry: CommitRetry | None = None) -> Lake:
    """The lake under ``storage``'s root, with the same location and credentials (nothing opened yet)."""
    root, options = storage.delta_location()
    refresh = (lambda: storage.delta_location()[1]) if options else None
    return Lake(
        LakeLocation(root, options, refresh), metadata=metadata, retry=retry, layout_probe=LayoutProbe(storage.listdir, storage.display)
    )


# --- pure helpers ---------------------------------------------------------------------------------


def slots_predicate(keys: Iterable[tuple[str, datetime]]) -> str:
    """A replace-where predicate matching exactly the given (account, slot) pairs.

    Slots with the same accounts share one term (slots x accounts), so a backfilled day of 24 slots
    is one term rather than 24: delta-rs checks every written row against the predicate. Account ids
    are validated ids from the configuration (never API data); quotes are doubled anyway.

    >>> from datetime import UTC
    >>> slots_predicate([("b", datetime(2026, 3, 1, 5, tzinfo=UTC)), ("a", datetime(2026, 3, 1, 5, tzinfo=UTC))])
    "(snapshot_date = '2026-03-01' AND snapshot_at = '2026-03-01T05:00:00+00:00' AND account_id IN ('a', 'b'))"
    >>> print(slots_predicate([(a, datetime(2026, 3, 1, h, tzinfo=UTC)) for a in "ab" for h in (5, 6)]
    ...                       + [("a", datetime(2026, 3, 2, 0, tzinfo=UTC))]))  # doctest: +NORMALIZE_WHITESPACE
    (snapshot_date = '2026-03-01' AND snapshot_at IN ('2026-03-01T05:00:00+00:00', '2026-03-01T06:00:00+00:00')
     AND account_id IN ('a', 'b')) OR (snapshot_date = '2026-03-02' AND snapshot_at = '2026-03-02T00:00:00+00:00'
     AND account_id IN ('a'))
    """
    by_slot: dict[datetime, set[str]] = {}
    for account_id, slot in keys:
        by_slot.setdefault(as_utc(slot), set()).add(account_id)
    by_accounts: dict[tuple[str, ...], list[datetime]] = {}
    for slot, accounts in sorted(by_slot.items()):
        by_accounts.setdefault(tuple(sorted(accounts)), []).append(slot)
    terms = []
    for account_ids, slots in sorted(by_accounts.items(), key=lambda item: item[1][0]):
        days = sorted({slot.date().isoformat() for slot in slots})
        terms.append(
            f"({_matches(PARTITION_COLUMN, days)} AND "
            f"{_matches('snapshot_at', [slot.isoformat() for slot in slots])} AND "
            f"account_id IN ({', '.join(_quote(a) for a in account_ids)}))"
        )
    return " OR ".join(terms)


def _matches(column: str, values: list[str]) -> str:
    quoted = [f"'{value}'" for value in values]  # dates and timestamps we formatted: no quotes inside
    return f"{column} = {quoted[0]}" if len(quoted) == 1 else f"{column} IN ({', '.join(quoted)})"


def runs_table(runs: Sequence[AccountRun]) -> pa.Table:
    """``account_runs`` rows of the lake (with their snapshot_date partition column)."""
    rows = [{**run.row(), "snapshot_date": as_utc(run.snapshot_at).date()} for run in runs]
    return pa.Table.from_pylist(rows, schema=LAKE_ACCOUNT_RUNS.schema)


FEW_PARTS = 4  # parts a commit's table may keep as they are


def _concat(tables: list[pa.Table], spec: TableSpec) -> pa.Table:
    parts = [t.select(spec.schema.names).cast(spec.schema) if not t.schema.equals(spec.schema) else t for t in tables if t.num_rows]
    if not parts:
        return spec.schema.empty_table()
    # delta-rs encodes a stream of many small record batches (one per slot) markedly slower than the
    # same rows in a few large ones; a few large slices (a backfill's units) go as they are, uncopied.
    table = pa.concat_tables(parts)
    return table.combine_chunks() if len(parts) > FEW_PARTS else table


def _slot_metadata(loads: Sequence[SlotLoad]) -> dict[str, str]:
    slots = sorted({as_utc(ld.run.snapshot_at) for ld in loads})
    if len(slots) == 1:
        return {"nugen.slot": slots[0].isoformat(), "nugen.accounts": str(len(loads))}
    return {
        "nugen.slots": f"{slots[0].isoformat()}..{slots[-1].isoformat()}",
        "nugen.slot_count": str(len(slots)),
        "nugen.accounts": str(len({ld.run.account_id for ld in loads})),
    }


def _keys(loads: Sequence[SlotLoad]) -> list[tuple[str, datetime]]:
    return [(ld.run.account_id, ld.run.snapshot_at) for ld in loads]


def _describe(keys: Iterable[tuple[str, datetime]]) -> str:
    keys = list(keys)
    accounts = sorted({a for a, _ in keys})
    slots = sorted({as_utc(s) for _, s in keys})
    named = ", ".join(accounts[:10]) + (f" and {len(accounts) - 10} more" if len(accounts) > 10 else "")
    when = slots[0].isoformat() if len(slots) == 1 else f"{len(slots)} slots {slots[0].isoformat()}..{slots[-1].isoformat()}"
    return f"account(s) {named} in slot {when}" if len(slots) == 1 else f"account(s) {named} in {when}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _zstd() -> Any:
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD")
