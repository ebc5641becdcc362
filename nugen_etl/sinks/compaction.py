"""Lake maintenance: rewrite each closed day into few z-ordered files, then vacuum what no retained
version needs.

A day is *closed* once its last slot can no longer be fetched: ``lateness`` (two slots by default,
as in the Airflow DAG) after the day's end. A day is compacted once; the files it was left with are
recorded in ``_nugen/compaction.json`` under the storage root, so a later rerun or backfill that
rewrites the day (its files change) makes it due again, and an untouched day is never rewritten twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ..storage import Storage
from .lake import LAKE_TABLES, Lake

log = logging.getLogger(__name__)

STATE_KEY = "_nugen/compaction.json"


@dataclass
class CompactionReport:
    days: list[date] = field(default_factory=list)
    files_before: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> table -> files
    files_after: dict[str, dict[str, int]] = field(default_factory=dict)
    vacuumed: dict[str, int] = field(default_factory=dict)  # table -> files deleted

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "files_before": self.files_before,
            "files_after": self.files_after,
            "vacuumed": self.vacuumed,
        }


def is_closed(day: date, *, now: datetime, lateness: timedelta) -> bool:
    """Whether every slot of ``day`` is past fetching.

    >>> is_closed(date(2026, 3, 1), now=datetime(2026, 3, 2, 2, tzinfo=UTC), lateness=timedelta(hours=2))
    True
    >>> is_closed(date(2026, 3, 1), now=datetime(2026, 3, 2, 1, 59, tzinfo=UTC), lateness=timedelta(hours=2))
    False
    """
    return datetime.combine(day + timedelta(days=1), time(), UTC) + lateness <= now


def due_days(lake: Lake, state: dict[str, dict[str, list[str]]], *, now: datetime, lateness: timedelta) -> list[date]:
    """Closed days whose files differ from what their last compaction left (or never compacted)."""
    due: set[date] = set()
    for spec in LAKE_TABLES:
        done = state.get(spec.name, {})
        for day, files in lake.day_files(spec).items():
            if is_closed(day, now=now, lateness=lateness) and done.get(day.isoformat()) != files:
                due.add(day)
    return sorted(due)


def compact_lake(
    lake: Lake,
    storage: Storage,
    *,
    now: datetime,
    lateness: timedelta,
    retention_hours: float,
    target_size: int | None = None,
    day: date | None = None,
) -> CompactionReport:
    """Compact ``day`` (any day, closed or not), or every due day; then vacuum with ``retention_hours``."""
    state = load_state(storage)
    report = CompactionReport()
    report.days = [day] if day is not None else due_days(lake, state, now=now, lateness=lateness)
    for each in report.days:
        key = each.isoformat()
        report.files_before[key] = _file_counts(lake, each)
        lake.compact_day(each, target_size=target_size)
        after = {spec.name: lake.day_files(spec).get(each, []) for spec in LAKE_TABLES}
        report.files_after[key] = {name: len(files) for name, files in after.items()}
        for name, files in after.items():
            state.setdefault(name, {})[key] = files
        save_state(storage, state)  # after every day: a crash loses at most one day's record
        log.info("compacted %s: files %s -> %s", key, report.files_before[key], report.files_after[key])
    report.vacuumed = lake.vacuum(retention_hours=retention_hours)
    return report


def _file_counts(lake: Lake, day: date) -> dict[str, int]:
    return {spec.name: len(lake.day_files(spec).get(day, [])) for spec in LAKE_TABLES}


def load_state(storage: Storage) -> dict[str, dict[str, list[str]]]:
    try:
        data = json.loads(storage.read_bytes(STATE_KEY))
    except FileNotFoundError:
        return {}
    except ValueError:
        log.warning("%s/%s is not valid JSON: every closed day is compacted again", storage.display, STATE_KEY)
        return {}
    return data if isinstance(data, dict) else {}


def save_state(storage: Storage, state: dict[str, dict[str, list[str]]]) -> None:
    storage.write_bytes_atomic(STATE_KEY, json.dumps(state, sort_keys=True).encode())
