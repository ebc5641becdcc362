"""SlotWriter writes Parquet in background threads: a batch reaches the warehouse only after its files
are written, a failed write keeps its slot out of the warehouse (reported), and the same slot added
twice ends with the second version on disk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nugen_etl.load import SlotWriter
from nugen_etl.parquet_sink import slot_file_path
from nugen_etl.pipeline import answer_to_load
from nugen_etl.records import RawAnswer
from nugen_etl.schemas import MODEL_SNAPSHOTS
from nugen_etl.simulator import SimulatorState
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import RunSummary
from nugen_etl.warehouse import open_warehouse

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class FailingStorage(LocalStorage):
    error: Exception = OSError("disk full")

    def write_bytes_atomic(self, key: str, data: bytes) -> None:
        if "account_id=acct-0002" in key:
            raise self.error
        super().write_bytes_atomic(key, data)


class BuggyStorage(FailingStorage):
    error = RuntimeError("unexpected bug")


def _loads(state: SimulatorState, slot: datetime, body: bytes | None = None):
    return [answer_to_load(RawAnswer(account_id=a, snapshot_at=slot, fetched_at=slot, http_status=200,
                                     body=body or state.body_at(a, slot + timedelta(minutes=3))))
            for a in state.account_ids[:-1]]


@pytest.mark.parametrize("storage_type", [FailingStorage, BuggyStorage])
def test_failed_parquet_write_keeps_the_slot_out_and_the_rest_loads(tmp_path: Path, storage_type) -> None:
    state = SimulatorState(5, 6, models=4, start=T0)
    summary = RunSummary("run", T0)
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        with SlotWriter(storage_type(tmp_path, fsync=False), wh, batch_size=2, summary=summary) as writer:
            for load in _loads(state, T0):
                writer.add(load)
        loaded = {r[0] for r in wh.fetch_all("select account_id from nugen.account_runs")}
    assert "acct-0002" in state.account_ids
    assert summary.errors == {"acct-0002": f"parquet write failed: {storage_type.error}"}
    assert loaded == set(state.account_ids[:-1]) - {"acct-0002"}
    for a in loaded:
        assert slot_file_path(tmp_path, MODEL_SNAPSHOTS, a, T0).exists()


def test_the_same_slot_twice_ends_with_the_second_version(tmp_path: Path) -> None:
    state = SimulatorState(5, 3, models=4, start=T0)
    first = _loads(state, T0)
    second = _loads(state, T0, body=json.dumps({"domain_aligned_models": [{"id": "only-one"}]}).encode())
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        with SlotWriter(LocalStorage(tmp_path, fsync=False), wh, batch_size=100,
                        summary=RunSummary("run", T0)) as writer:
            for a, b in zip(first, second):
                writer.add(a)
                writer.add(b)
        for load in second:
            path = slot_file_path(tmp_path, MODEL_SNAPSHOTS, load.run.account_id, T0)
            assert pq.read_table(path).column("model_id").to_pylist() == ["only-one"]
