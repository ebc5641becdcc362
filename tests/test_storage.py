"""Raw archive and Parquet sink on real files: round trips, layout, atomic replacement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from nugen_etl.errors import ConfigError
from nugen_etl.parquet_sink import slot_file_path, write_slot_parquet
from nugen_etl.raw_archive import list_archived_slots, read_raw_answer, write_raw_answer
from nugen_etl.records import RawAnswer
from nugen_etl.schemas import MODEL_METRICS, MODEL_SNAPSHOTS

SLOT = datetime(2026, 3, 1, 5, tzinfo=UTC)


def raw(account: str = "acme", slot: datetime = SLOT, body: bytes = b'{"domain_aligned_models": []}',
        fetched: datetime | None = None, status: int | None = 200) -> RawAnswer:
    return RawAnswer(account_id=account, snapshot_at=slot, fetched_at=fetched or slot + timedelta(seconds=7),
                     http_status=status, body=body, headers={"content-type": "application/json"}, attempts=2)


def test_raw_answer_round_trips_bytes_exactly(tmp_path: Path) -> None:
    body = b'{"x": "\xc3\xa9\\u0000"}\n\x00\xff trailing bytes as received'
    path = write_raw_answer(tmp_path, raw(body=body, status=503))
    assert path.parent == tmp_path / "raw" / "account_id=acme" / "snapshot_date=2026-03-01"
    back = read_raw_answer(path)
    assert back == raw(body=body, status=503)


def test_raw_answer_refuses_unsafe_account_ids(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_raw_answer(tmp_path, raw(account="../escape"))
    assert not any(tmp_path.parent.glob("escape*"))


def test_archived_slots_are_listed_per_slot_oldest_fetch_first(tmp_path: Path) -> None:
    later = SLOT + timedelta(hours=1)
    first = write_raw_answer(tmp_path, raw(fetched=SLOT + timedelta(seconds=1)))
    second = write_raw_answer(tmp_path, raw(fetched=SLOT + timedelta(seconds=2)))
    write_raw_answer(tmp_path, raw(slot=later))
    write_raw_answer(tmp_path, raw(account="other", slot=SLOT + timedelta(days=3)))
    found = list(list_archived_slots(tmp_path, start=SLOT, end=SLOT + timedelta(days=1)))
    assert [(a, s) for a, s, _ in found] == [("acme", SLOT), ("acme", later)]
    assert found[0][2] == [first, second]
    only_other = list(list_archived_slots(tmp_path, start=SLOT, end=SLOT + timedelta(days=5), account_ids=["other"]))
    assert [(a, s) for a, s, _ in only_other] == [("other", SLOT + timedelta(days=3))]


def snapshot_rows(n: int) -> pa.Table:
    names = MODEL_SNAPSHOTS.schema.names
    rows = [{c: None for c in names} | {
        "account_id": "acme", "model_id": f"m{i}", "model_key": f"k{i}", "snapshot_at": SLOT,
        "snapshot_date": SLOT.date(), "fetched_at": SLOT, "usage_count": 10 * i, "accuracy": 0.5 + i / 100}
        for i in range(n)]
    return pa.Table.from_pylist(rows, schema=MODEL_SNAPSHOTS.schema)


def test_parquet_slot_files_are_hive_partitioned_and_replaced(tmp_path: Path) -> None:
    metrics = MODEL_METRICS.schema.empty_table()
    write_slot_parquet(tmp_path, {"model_snapshots": snapshot_rows(3), "model_metrics": metrics},
                       account_id="acme", snapshot_at=SLOT)
    path = slot_file_path(tmp_path, MODEL_SNAPSHOTS, "acme", SLOT)
    assert path == tmp_path / "model_snapshots/snapshot_date=2026-03-01/account_id=acme/part-20260301T050000Z.parquet"
    assert not slot_file_path(tmp_path, MODEL_METRICS, "acme", SLOT).exists()

    write_slot_parquet(tmp_path, {"model_snapshots": snapshot_rows(2), "model_metrics": metrics},
                       account_id="acme", snapshot_at=SLOT)
    glob = f"{tmp_path}/model_snapshots/**/*.parquet"
    rows = duckdb.sql(f"select account_id, snapshot_date, model_id, usage_count from "
                      f"read_parquet('{glob}', hive_partitioning=true) order by model_id").fetchall()
    assert rows == [("acme", SLOT.date(), "m0", 0), ("acme", SLOT.date(), "m1", 10)]
    table = ds.dataset(tmp_path / "model_snapshots", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 2 and set(table.column("account_id").to_pylist()) == {"acme"}
    assert table.schema.field("snapshot_at").type == pa.timestamp("us", tz="UTC")
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_empty_slot_removes_the_slot_file(tmp_path: Path) -> None:
    empty = {"model_snapshots": snapshot_rows(0), "model_metrics": MODEL_METRICS.schema.empty_table()}
    write_slot_parquet(tmp_path, {"model_snapshots": snapshot_rows(1), "model_metrics": empty["model_metrics"]},
                       account_id="acme", snapshot_at=SLOT)
    write_slot_parquet(tmp_path, empty, account_id="acme", snapshot_at=SLOT)
    assert not slot_file_path(tmp_path, MODEL_SNAPSHOTS, "acme", SLOT).exists()
