"""Upgrading a storage root from nugen-etl 0.1's per-slot Parquet files to the Delta lake.

The old folders (``model_snapshots/``, ``model_metrics/`` holding ``snapshot_date=*/account_id=*/
part-*.parquet``) are moved, not deleted, to ``legacy-parquet/`` under the same root; the Delta
tables are then rebuilt from the raw archive by a backfill. Moving is a rename locally and a
copy-then-delete per object on S3.
"""

from __future__ import annotations

import logging
import os
from datetime import date

from ..storage import LocalStorage, Storage
from .archive import RAW_DIR
from .lake import LAKE_TABLES, LEGACY_DIR, LayoutProbe

log = logging.getLogger(__name__)


def legacy_tables(storage: Storage) -> list[str]:
    """The lake tables whose folder still holds the old per-slot layout."""
    probe = LayoutProbe(storage.listdir, storage.display)
    return [spec.name for spec in LAKE_TABLES if probe.is_legacy(spec.name)]


def move_legacy_tables(storage: Storage) -> list[str]:
    """Move each legacy table folder to ``legacy-parquet/<table>``; returns the moved names."""
    moved = []
    for name in legacy_tables(storage):
        target = f"{LEGACY_DIR}/{name}"
        if storage.listdir(target) != ([], []):
            raise FileExistsError(f"{storage.display}/{target} already exists: move it away first, nothing is overwritten")
        if isinstance(storage, LocalStorage):
            (storage.root / LEGACY_DIR).mkdir(exist_ok=True)
            os.rename(storage.path(name), storage.path(target))
        else:
            for key in _walk(storage, name):
                storage.write_bytes_atomic(f"{LEGACY_DIR}/{key}", storage.read_bytes(key))
                storage.delete(key)
        log.info("moved %s/%s to %s/%s", storage.display, name, storage.display, target)
        moved.append(name)
    return moved


def archived_days(storage: Storage) -> tuple[date, date] | None:
    """The first and last UTC day that the raw archive holds answers for (None when empty)."""
    days: set[date] = set()
    for account in storage.listdir(RAW_DIR)[0]:
        for folder in storage.listdir(f"{RAW_DIR}/{account}")[0]:
            try:
                days.add(date.fromisoformat(folder.removeprefix("snapshot_date=")))
            except ValueError:
                continue
    return (min(days), max(days)) if days else None


def _walk(storage: Storage, folder: str) -> list[str]:
    folders, files = storage.listdir(folder)
    keys = [f"{folder}/{f}" for f in files]
    for sub in folders:
        keys += _walk(storage, f"{folder}/{sub}")
    return keys
