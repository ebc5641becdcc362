"""Hive-partitioned Parquet datasets: one file per (table, account, slot), replaced atomically.

Layout: ``ROOT/<table>/snapshot_date=YYYY-MM-DD/account_id=ID/part-<slot>.parquet`` (zstd).
The partition columns live in the path, not in the file, as hive readers expect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from .config import validate_account_id
from .files import atomic_write, remove_file
from .schemas import MODEL_METRICS, MODEL_SNAPSHOTS, TableSpec
from .slots import slot_stamp

PARQUET_TABLES = (MODEL_SNAPSHOTS, MODEL_METRICS)
PARTITION_COLUMNS = ("snapshot_date", "account_id")


def slot_file_path(root: Path, spec: TableSpec, account_id: str, snapshot_at: datetime) -> Path:
    account_id = validate_account_id(account_id)
    day = snapshot_at.astimezone(UTC).date()
    return (root / spec.name / f"snapshot_date={day}" / f"account_id={account_id}"
            / f"part-{slot_stamp(snapshot_at)}.parquet")


def file_schema(spec: TableSpec) -> pa.Schema:
    """The declared schema without the partition columns (they are in the path)."""
    return pa.schema([f for f in spec.schema if f.name not in PARTITION_COLUMNS])


def write_slot_parquet(root: Path, tables: dict[str, pa.Table], *, account_id: str,
                       snapshot_at: datetime, fsync: bool = True) -> list[Path]:
    """Replace the slot's file in each dataset; a slot with no rows has no file. Returns written paths."""
    written = []
    for spec in PARQUET_TABLES:
        path = slot_file_path(root, spec, account_id, snapshot_at)
        table = tables[spec.name]
        if table.num_rows == 0:
            remove_file(path, fsync=fsync)
            continue
        body = table.select(file_schema(spec).names).cast(file_schema(spec))

        def write(fh: BinaryIO, body: pa.Table = body) -> None:
            pq.write_table(body, fh, compression="zstd")

        atomic_write(path, write, fsync=fsync)
        written.append(path)
    return written
