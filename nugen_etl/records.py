"""Records passed between stages: a fetched (or replayed) answer and the outcome of one account's slot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


class Outcome(str, Enum):
    OK = "ok"
    EMPTY = "empty"                # 404 "No aligned models found" or an empty list
    AUTH_FAILED = "auth_failed"    # 401/403, never retried
    FAILED = "failed"              # anything else after retries
    NOT_OBSERVED = "not_observed"  # a past slot with no raw answer to replay

    def __str__(self) -> str:
        return self.value


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


@dataclass(frozen=True)
class SlotLoad:
    """Everything the warehouse receives for one (account, slot).

    ``tables`` maps a table name from ``schemas`` (model_snapshots, model_metrics, evaluations,
    quarantined_records) to its rows. ``None`` means the outcome carries no data (failed,
    auth_failed, not_observed): the slot's existing rows stay untouched and only the run is
    recorded. Empty tables (outcome ``empty``) replace the slot's rows with nothing.
    """

    run: AccountRun
    tables: dict[str, "pa.Table"] | None = None


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
