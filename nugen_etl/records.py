"""Records passed between stages: a fetched (or replayed) answer and the outcome of one account's slot."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa


ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def validate_account_id(value: Any, where: str = "accounts.id") -> str:
    """``value`` if it is a valid account id (it names folders and lake partitions), else ConfigError."""
    if not isinstance(value, str) or not ACCOUNT_ID_RE.fullmatch(value):
        raise ConfigError(f"{where}: invalid account id {value!r}: use 1-64 characters [A-Za-z0-9_.-], starting with a letter or digit")
    return value


class Outcome(StrEnum):
    OK = "ok"
    EMPTY = "empty"  # 404 "No aligned models found" or an empty list
    AUTH_FAILED = "auth_failed"  # 401/403, never retried
    FAILED = "failed"  # anything else after retries
    NOT_OBSERVED = "not_observed"  # a past slot with no raw answer to replay


SUCCESS_OUTCOMES = frozenset({Outcome.OK, Outcome.EMPTY})


@dataclass(frozen=True)
class RawAnswer:
    """One API answer exactly as received, plus its fetch metadata (what the raw archive stores).

    ``http_status`` is None when no HTTP answer arrived (timeout, refused connection);
    then ``error`` says why. ``headers`` holds only the headers worth keeping (never Authorization).
    """

    account_id: str
    snapshot_at: datetime
    fetched_at: datetime
    http_status: int | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 1
    error: str | None = None


@dataclass(frozen=True)
class AccountRun:
    """One row of ``nugen.account_runs``: what happened to one account in one slot."""

    account_id: str
    snapshot_at: datetime
    outcome: Outcome
    http_status: int | None = None
    model_count: int = 0
    quarantined_count: int = 0
    coerced_count: int = 0
    attempts: int = 0
    fetched_at: datetime | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The run as an ``account_runs`` row: times in UTC, the outcome as its text."""
        return {
            "account_id": self.account_id,
            "snapshot_at": as_utc(self.snapshot_at),
            "outcome": Outcome(self.outcome).value,
            "http_status": self.http_status,
            "model_count": self.model_count,
            "quarantined_count": self.quarantined_count,
            "coerced_count": self.coerced_count,
            "attempts": self.attempts,
            "fetched_at": None if self.fetched_at is None else as_utc(self.fetched_at),
            "error": self.error,
        }


@dataclass(frozen=True)
class SlotLoad:
    """Everything the warehouse receives for one (account, slot).

    ``tables`` maps a table name from ``schemas`` (model_snapshots, model_metrics, evaluations,
    quarantined_records) to its rows. ``None`` means the outcome carries no data (failed,
    auth_failed, not_observed): the slot's existing rows stay untouched and only the run is
    recorded. Empty tables (outcome ``empty``) replace the slot's rows with nothing.
    """

    run: AccountRun
    tables: Mapping[str, pa.Table] | None = None


class PackedTables:
    """The tables of several slots, each one contiguous table: slot ``i`` owns the rows
    ``offsets[name][i]:offsets[name][i + 1]`` of ``tables[name]``."""

    __slots__ = ("tables", "offsets")

    def __init__(self, tables: dict[str, pa.Table], offsets: dict[str, list[int]]) -> None:
        self.tables, self.offsets = tables, offsets

    def slot(self, index: int) -> SlotTables:
        return SlotTables(self, index)


class SlotTables(Mapping[str, "pa.Table"]):
    """One slot's tables of a ``PackedTables``, each a zero-copy slice made when it is read.

    ``gather`` hands consecutive slots of one ``PackedTables`` on as one slice: a batch of them costs
    no per-slot slicing and concatenating."""

    __slots__ = ("packed", "index")

    def __init__(self, packed: PackedTables, index: int) -> None:
        self.packed, self.index = packed, index

    def bounds(self, name: str) -> tuple[int, int]:
        offsets = self.packed.offsets[name]
        return offsets[self.index], offsets[self.index + 1]

    def __getitem__(self, name: str) -> pa.Table:
        start, stop = self.bounds(name)
        return self.packed.tables[name].slice(start, stop - start)

    def __contains__(self, name: object) -> bool:
        return name in self.packed.tables

    def __iter__(self) -> Iterator[str]:
        return iter(self.packed.tables)

    def __len__(self) -> int:
        return len(self.packed.tables)


def table_rows(tables: Mapping[str, pa.Table], name: str) -> int:
    """Rows of table ``name`` in one slot's ``tables`` (0 when it has none), without slicing."""
    if isinstance(tables, SlotTables):
        if name not in tables:
            return 0
        start, stop = tables.bounds(name)
        return stop - start
    table = tables.get(name)
    return 0 if table is None else table.num_rows


def gather(slots: Sequence[Mapping[str, pa.Table]], name: str) -> list[pa.Table]:
    """Table ``name`` of each slot's tables, in order, for concatenating: consecutive slots of one
    ``PackedTables`` come as one slice; slots without the table are skipped."""
    parts: list[pa.Table] = []
    run: tuple[PackedTables, int, int] | None = None  # (packed, first slot, last slot)

    def close() -> None:
        if run is not None:
            packed, first, last = run
            offsets, table = packed.offsets[name], packed.tables[name]
            start, stop = offsets[first], offsets[last + 1]
            # the whole table (e.g. one answer flattened alone) as it is: a slice of a wide table costs ~30 us
            parts.append(table if start == 0 and stop == table.num_rows else table.slice(start, stop - start))

    for tables in slots:
        if isinstance(tables, SlotTables) and name in tables:
            if run is not None and run[0] is tables.packed and run[2] + 1 == tables.index:
                run = (run[0], run[1], tables.index)
                continue
            close()
            run = (tables.packed, tables.index, tables.index)
            continue
        close()
        run = None
        table = tables.get(name)
        if table is not None:
            parts.append(table)
    close()
    return parts


def as_utc(moment: datetime) -> datetime:
    """Aware datetimes converted to UTC; naive ones are taken as UTC (as Arrow does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def is_success(run: AccountRun) -> bool:
    return Outcome(run.outcome) in SUCCESS_OUTCOMES


def latest_per_slot(loads: Sequence[SlotLoad]) -> dict[tuple[str, datetime], SlotLoad]:
    """One load per (account, UTC slot), in key order: the last one given, except that a failure
    never replaces a success (within a batch as in the tables)."""
    chosen: dict[tuple[str, datetime], SlotLoad] = {}
    for load in loads:
        key = (load.run.account_id, as_utc(load.run.snapshot_at))
        previous = chosen.get(key)
        if previous is not None and is_success(previous.run) and not is_success(load.run):
            continue
        chosen[key] = load
    return {key: chosen[key] for key in sorted(chosen)}
