"""Raw archive and the lake's Delta tables on real files: round trips, layout, replacement of a slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from nugen_etl.errors import ConfigError
from nugen_etl.records import AccountRun, Outcome, RawAnswer, SlotLoad
from nugen_etl.schemas import MODEL_METRICS, MODEL_SNAPSHOTS
from nugen_etl.sinks.archive import list_archived_slots, read_raw_answer, write_raw_answer
from nugen_etl.sinks.lake import open_lake
from nugen_etl.storage import LocalStorage

SLOT = datetime(2026, 3, 1, 5, tzinfo=UTC)


def raw(
    account: str = "acme",
    slot: datetime = SLOT,
    body: bytes = b'{"domain_aligned_models": []}',
    fetched: datetime | None = None,
    status: int | None = 200,
) -> RawAnswer:
    return RawAnswer(
        account_id=account,
        snapshot_at=slot,
        fetched_at=fetched or slot + timedelta(seconds=7),
        http_status=status,
        body=body,
        headers={"content-type": "application/json"},
        attempts=2,
    )


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
    rows = [
        {c: None for c in names}
        | {
            "account_id": "acme",
            "model_id": f"m{i}",
            "model_key": f"k{i}",
            "snapshot_at": SLOT,
            "snapshot_date": SLOT.date(),
            "fetched_at": SLOT,
            "usage_count": 10 * i,
            "accuracy": 0.5 + i / 100,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=MODEL_SNAPSHOTS.schema)


def slot_load(n: int, account: str = "acme") -> SlotLoad:
    column = MODEL_SNAPSHOTS.schema.get_field_index("account_id")
    snapshots = snapshot_rows(n).set_column(column, "account_id", pa.array([account] * n, pa.string()))
    run = AccountRun(account, SLOT, Outcome.OK if n else Outcome.EMPTY, http_status=200, model_count=n)
    return SlotLoad(run, {"model_snapshots": snapshots, "model_metrics": MODEL_METRICS.schema.empty_table()})


def test_lake_tables_are_partitioned_by_day_and_a_slot_is_replaced(tmp_path: Path) -> None:
    with open_lake(LocalStorage(tmp_path, fsync=False)) as lake:
        assert (lake.location.root, lake.location.options()) == (str(tmp_path.resolve()), None)
        lake.write([slot_load(3), slot_load(1, "other")])
        first = DeltaTable(str(tmp_path / "model_snapshots")).version()
        lake.write([slot_load(2)])

    folders = {p.relative_to(tmp_path / "model_snapshots").parts[0] for p in (tmp_path / "model_snapshots").iterdir()}
    assert folders == {"_delta_log", "snapshot_date=2026-03-01"}, "partitioned by day only, never by account"
    snapshots = DeltaTable(str(tmp_path / "model_snapshots")).to_pyarrow_dataset()
    rows = duckdb.sql("select account_id, snapshot_date, model_id, usage_count from snapshots order by account_id, model_id").fetchall()
    assert rows == [("acme", SLOT.date(), "m0", 0), ("acme", SLOT.date(), "m1", 10), ("other", SLOT.date(), "m0", 0)]
    table = snapshots.to_table()
    assert table.schema.field("snapshot_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.equals(MODEL_SNAPSHOTS.schema, check_metadata=True)
    assert DeltaTable(str(tmp_path / "model_snapshots")).version() == first + 1
    earlier = DeltaTable(str(tmp_path / "model_snapshots"), version=first).to_pyarrow_table()
    assert sorted(earlier["model_id"].to_pylist()) == ["m0", "m0", "m1", "m2"], "the earlier version is kept"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_an_empty_slot_removes_the_slots_rows(tmp_path: Path) -> None:
    with open_lake(LocalStorage(tmp_path, fsync=False)) as lake:
        lake.write([slot_load(1), slot_load(2, "other")])
        lake.write([slot_load(0)])
    left = DeltaTable(str(tmp_path / "model_snapshots")).to_pyarrow_table()
    assert sorted(zip(left["account_id"].to_pylist(), left["model_id"].to_pylist(), strict=False)) == [("other", "m0"), ("other", "m1")]
    runs = DeltaTable(str(tmp_path / "account_runs")).to_pyarrow_table()
    assert dict(zip(runs["account_id"].to_pylist(), runs["outcome"].to_pylist(), strict=False)) == {"acme": "empty", "other": "ok"}
