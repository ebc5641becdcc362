"""Which slot an Airflow run snapshots, and whether that slot is live (call the API) or past (replay only)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..slots import floor_slot


def run_slot(context: Mapping[str, Any], granularity: timedelta) -> datetime:
    """The slot of a run: its data interval end, floored to the granularity.

    A run without a data interval (a manual run triggered without a logical date) takes its
    logical date, else the time it was queued for (``run_after``), floored the same way: a
    deterministic slot that a retry of the same run finds again.
    """
    moment = context.get("data_interval_end") or context.get("logical_date")
    if moment is None:
        dag_run = context.get("dag_run")
        moment = getattr(dag_run, "run_after", None) or getattr(dag_run, "start_date", None)
    if moment is None:
        raise ValueError("the run has no data interval, logical date or run_after to take a slot from")
    # Airflow hands out pendulum DateTimes; the library works with plain aware datetimes.
    return floor_slot(datetime.fromtimestamp(moment.timestamp(), tz=UTC), granularity)


def is_past(slot: datetime, *, now: datetime, lateness: timedelta) -> bool:
    """True when the slot ended more than ``lateness`` ago: the API cannot serve it any more.

    >>> t = datetime(2026, 3, 1, 10, tzinfo=UTC)
    >>> is_past(t, now=t + timedelta(hours=2), lateness=timedelta(hours=2))
    False
    >>> is_past(t, now=t + timedelta(hours=2, seconds=1), lateness=timedelta(hours=2))
    True
    """
    return now - slot > lateness


def batches(ids: list[str], size: int, *, max_batches: int) -> list[list[str]]:
    """``ids`` in order, in batches of ``size`` (grown so there are at most ``max_batches``).

    >>> batches(["a", "b", "c"], 2, max_batches=10)
    [['a', 'b'], ['c']]
    >>> batches([str(i) for i in range(10)], 1, max_batches=3)
    [['0', '1', '2', '3'], ['4', '5', '6', '7'], ['8', '9']]
    """
    size = max(size, -(-len(ids) // max_batches))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
