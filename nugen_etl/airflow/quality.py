"""Data-quality checks on one slot in the warehouse: each returns a problem description or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..sinks.pending import PendingJournal
from ..warehouse import Warehouse

# name -> (query counting offending rows, what it means). One bound parameter: the slot
# (a timestamp), or its UTC day for the daily views (the queries that compare ``day``).
CHECKS: dict[str, tuple[str, str]] = {
    "accuracy_in_unit_interval": (
        "select count(*) from nugen.model_snapshots where snapshot_at = ? and (accuracy < 0 or accuracy > 1)",
        "model_snapshots rows with accuracy outside [0, 1]",
    ),
    "no_duplicate_snapshot_keys": (
        "select count(*) from (select account_id, model_id from nugen.model_snapshots "
        "where snapshot_at = ? group by account_id, model_id having count(*) > 1) d",
        "(account_id, model_id) keys present more than once in model_snapshots",
    ),
    "no_duplicate_metric_keys": (
        "select count(*) from (select account_id, model_id, metric from nugen.model_metrics "
        "where snapshot_at = ? group by account_id, model_id, metric having count(*) > 1) d",
        "(account_id, model_id, metric) keys present more than once in model_metrics",
    ),
    "usage_not_negative": (
        "select count(*) from nugen.model_snapshots where snapshot_at = ? and usage_count < 0",
        "model_snapshots rows with a negative usage_count",
    ),
    "usage_delta_not_negative": (
        "select count(*) from nugen.model_usage_daily where day = ? and usage_delta < 0",
        "model_usage_daily rows of the slot's day with a negative usage_delta",
    ),
}


@dataclass(frozen=True)
class Problem:
    check: str
    rows: int
    meaning: str

    def __str__(self) -> str:
        return f"{self.check}: {self.rows} {self.meaning}"


def check_slot(warehouse: Warehouse, snapshot_at: datetime) -> list[Problem]:
    """Run every check against the slot's rows; an empty list means the slot is fine."""
    problems = []
    for name, (sql, meaning) in CHECKS.items():
        param: object = snapshot_at.astimezone(UTC).date() if " day = " in sql else snapshot_at
        ((count,),) = warehouse.fetch_all(sql, [param])
        if count:
            problems.append(Problem(name, int(count), meaning))
    return problems


def slot_outcomes(warehouse: Warehouse, snapshot_at: datetime) -> dict[str, int]:
    """account_runs outcomes of the slot, counted."""
    rows = warehouse.fetch_all(
        "select outcome, count(*) from nugen.account_runs where snapshot_at = ? group by outcome order by outcome", [snapshot_at]
    )
    return {outcome: int(n) for outcome, n in rows}


def slot_row_counts(warehouse: Warehouse, snapshot_at: datetime) -> dict[str, int]:
    """Rows of the slot in each dataset that publish announces."""
    counts = {}
    for table in ("model_snapshots", "model_metrics"):
        ((n,),) = warehouse.fetch_all(f"select count(*) from nugen.{table} where snapshot_at = ?", [snapshot_at])
        counts[table] = int(n)
    return counts


def overdue_loads(journal: PendingJournal, alert_hours: float, *, now: datetime) -> list[Problem]:
    """One problem per pending-load journal entry older than ``alert_hours``, naming the command
    that loads it."""
    problems = []
    for entry in journal.entries():
        if (now - entry.since).total_seconds() > alert_hours * 3600:
            problems.append(
                Problem(
                    "warehouse_load_pending",
                    len(entry.outcomes),
                    f"account(s) of slot {entry.snapshot_at.isoformat()} archived but not in the warehouse since "
                    f"{entry.since.isoformat()} ({entry.reason}); run `nugen-etl load-pending --config FILE`",
                )
            )
    return problems
