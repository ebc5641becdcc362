"""SlotWriter: each batch is one Delta commit per table, then one warehouse transaction. A batch the
lake refuses stays out of the warehouse with its accounts reported and the other batches load; the
same slot added twice ends with the second version; a rerun of one account replaces only its rows;
a batch also closes at ``max_rows`` model rows. Overlapped (a backfill), each batch still reaches the
lake before the warehouse, batches load in order, and a busy warehouse stops the writer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from nugen_etl.records import RawAnswer, SlotLoad
from nugen_etl.schemas import LAKE_ACCOUNT_RUNS, MODEL_METRICS, MODEL_SNAPSHOTS
from nugen_etl.simulator import SimulatorState
from nugen_etl.sinks.lake import open_lake
from nugen_etl.sinks.writer import SlotWriter
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import RunSummary
from nugen_etl.transform import answer_to_load
from nugen_etl.warehouse import open_warehouse

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PRIMARY_KEYS = {spec.name: spec.primary_key for spec in (MODEL_SNAPSHOTS, MODEL_METRICS, LAKE_ACCOUNT_RUNS)}


def load_of(state: SimulatorState, account_id: str, slot: datetime, body: bytes | None = None) -> SlotLoad:
    return answer_to_load(
        RawAnswer(
            account_id=account_id,
            snapshot_at=slot,
            fetched_at=slot,
            http_status=200,
            body=body or state.body_at(account_id, slot + timedelta(minutes=3)),
        )
    )


def _loads(state: SimulatorState, slot: datetime, body: bytes | None = None) -> list[SlotLoad]:
    return [load_of(state, a, slot, body) for a in state.account_ids[:-1]]


def lake_rows(root: Path, name: str = "model_snapshots", version: int | None = None) -> list[dict]:
    """The table's rows in primary-key order (at ``version``, or the latest)."""
    table = DeltaTable(str(root / name), version=version).to_pyarrow_table()
    return table.sort_by([(c, "ascending") for c in PRIMARY_KEYS[name]]).to_pylist()


def writes(root: Path, name: str = "model_snapshots") -> list[dict]:
    return [c for c in DeltaTable(str(root / name)).history() if c["operation"] == "WRITE"]


@pytest.mark.parametrize("overlap", [False, True], ids=["in-turn", "overlapped"])
def test_a_refused_lake_commit_keeps_its_batch_out_and_the_rest_loads(tmp_path: Path, overlap: bool) -> None:
    """The second batch's day partition cannot be written (a file stands where its folder goes): the
    commit fails, both of its accounts are reported and loaded nowhere, the other batches go on."""
    state = SimulatorState(5, 6, models=4, start=T0)
    a1, a2, a3, a4, a5 = state.account_ids[:-1]
    blocked = T0 + timedelta(days=1)
    loads = [
        load_of(state, a1, T0),
        load_of(state, a2, T0),
        load_of(state, a3, blocked),
        load_of(state, a4, blocked),
        load_of(state, a5, T0),
    ]
    lake_root = tmp_path / "lake"
    (lake_root / "model_snapshots").mkdir(parents=True)
    (lake_root / "model_snapshots" / f"snapshot_date={blocked.date()}").write_text("not a folder")
    summary = RunSummary("run", T0)
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        with (
            open_lake(LocalStorage(lake_root, fsync=False)) as lake,
            SlotWriter(lake, wh, batch_size=2, summary=summary, overlap=overlap) as writer,
        ):
            for load in loads:
                writer.add(load)
        loaded = {r[0] for r in wh.fetch_all("select account_id from nugen.account_runs")}
    assert sorted(summary.errors) == [a3, a4]
    for error in summary.errors.values():
        assert error.startswith("lake write failed: model_snapshots: ") and f"{a3}, {a4}" in error
    assert loaded == {a1, a2, a5}
    expected_models = sum(load.tables["model_snapshots"].num_rows for load in loads if load.run.account_id in loaded)
    snapshots = lake_rows(lake_root)
    assert {r["account_id"] for r in snapshots} == loaded and len(snapshots) == expected_models
    runs = {r["account_id"] for r in lake_rows(lake_root, "account_runs")}
    assert runs == loaded, "a run row is committed only after its batch's data"
    # model_metrics is an independent commit of the same batch: it may have gone in (docs/reliability.md)
    assert loaded <= {r["account_id"] for r in lake_rows(lake_root, "model_metrics")} <= loaded | {a3, a4}


def test_the_same_slot_twice_ends_with_the_second_version(tmp_path: Path) -> None:
    state = SimulatorState(5, 3, models=4, start=T0)
    first = _loads(state, T0)
    second = _loads(state, T0, body=json.dumps({"domain_aligned_models": [{"id": "only-one"}]}).encode())
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        with (
            open_lake(LocalStorage(tmp_path, fsync=False)) as lake,
            SlotWriter(lake, wh, batch_size=100, summary=RunSummary("run", T0)) as writer,
        ):
            for a, b in zip(first, second, strict=False):
                writer.add(a)
                writer.add(b)
        stored = wh.fetch_all("select account_id, model_id from nugen.model_snapshots order by 1")
    accounts = [load.run.account_id for load in second]
    assert [(r["account_id"], r["model_id"]) for r in lake_rows(tmp_path)] == [(a, "only-one") for a in accounts]
    assert stored == [(a, "only-one") for a in accounts]
    assert len(writes(tmp_path)) == 1, "one batch, one commit"


def test_a_rerun_of_one_account_replaces_only_its_rows(tmp_path: Path) -> None:
    state = SimulatorState(5, 4, models=4, start=T0)
    slots = [T0, T0 + timedelta(hours=1)]
    storage = LocalStorage(tmp_path, fsync=False)
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        with open_lake(storage) as lake, SlotWriter(lake, wh, batch_size=2, summary=RunSummary("run", T0)) as writer:
            for slot in slots:
                for load in _loads(state, slot):
                    writer.add(load)
        before = lake_rows(tmp_path)
        version = DeltaTable(str(tmp_path / "model_snapshots")).version()
        target = state.account_ids[0]
        rerun = load_of(state, target, slots[0], json.dumps({"domain_aligned_models": [{"id": "rerun"}]}).encode())
        with open_lake(storage) as lake, SlotWriter(lake, wh, batch_size=2, summary=RunSummary("run", slots[0])) as writer:
            writer.add(rerun)
    after = lake_rows(tmp_path)
    replaced = [r for r in after if (r["account_id"], r["snapshot_at"]) == (target, slots[0])]
    assert [r["model_id"] for r in replaced] == ["rerun"]
    untouched = [r for r in before if (r["account_id"], r["snapshot_at"]) != (target, slots[0])]
    assert [r for r in after if r not in replaced] == untouched and len(untouched) < len(before)
    assert DeltaTable(str(tmp_path / "model_snapshots")).version() == version + 1
    assert lake_rows(tmp_path, version=version) == before, "time travel shows the earlier rows"
    commit = writes(tmp_path)[0]  # newest first
    assert (commit["nugen.slot"], commit["nugen.accounts"]) == (slots[0].isoformat(), "1")


@pytest.mark.parametrize("max_rows", [1, 6, 10])
def test_a_batch_closes_at_max_rows(tmp_path: Path, max_rows: int) -> None:
    state = SimulatorState(5, 6, models=4, start=T0)
    loads = _loads(state, T0)
    expected, rows = 0, 0
    for load in loads:  # a batch closes once its loads hold max_rows model rows or more
        rows += load.tables["model_snapshots"].num_rows
        if rows >= max_rows:
            expected, rows = expected + 1, 0
    expected += rows > 0
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        with (
            open_lake(LocalStorage(tmp_path, fsync=False)) as lake,
            SlotWriter(lake, wh, batch_size=None, max_rows=max_rows, summary=RunSummary("backfill", None)) as writer,
        ):
            for load in loads:
                writer.add(load)
        ((loaded,),) = wh.fetch_all("select count(*) from nugen.account_runs")
    assert expected == len(loads) if max_rows == 1 else 1 < expected < len(loads)  # batches of several
    assert len(writes(tmp_path, "account_runs")) == expected and loaded == len(loads)
    runs = DeltaTable(str(tmp_path / "account_runs")).to_pyarrow_table()
    assert pc.count_distinct(runs["account_id"]).as_py() == runs.num_rows == len(loads)


def test_overlapped_batches_reach_the_lake_first_load_in_order_and_a_busy_warehouse_stops_them(tmp_path: Path) -> None:
    """Batch N+1's lake commits may run while batch N loads, but no batch loads before its own commits,
    loads keep the batches' order, and a WarehouseBusy in the background comes out of the writer."""
    import threading
    import time

    from nugen_etl.errors import WarehouseBusy

    state = SimulatorState(5, 9, models=3, start=T0)
    loads = _loads(state, T0)  # 8 accounts: 4 batches of 2
    events: list[tuple[str, int, float, float]] = []  # (stage, batch, start, end)
    lock = threading.Lock()
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        lake = open_lake(LocalStorage(tmp_path / "lake", fsync=False))
        batch_of = {load.run.account_id: i // 2 for i, load in enumerate(loads)}

        def recording(stage: str, real, busy_at: int | None = None):
            def wrapper(batch, *args, **kwargs):
                number = batch_of[batch[0].run.account_id]
                started = time.perf_counter()
                if stage == "warehouse":
                    time.sleep(0.05)  # a slow load: the next batch's lake commits run meanwhile
                    if number == busy_at:
                        raise WarehouseBusy("held by a notebook")
                result = real(batch, *args, **kwargs)
                with lock:
                    events.append((stage, number, started, time.perf_counter()))
                return result

            return wrapper

        lake.write = recording("lake", lake.write)  # type: ignore[method-assign]
        wh.load = recording("warehouse", wh.load, busy_at=2)  # type: ignore[method-assign]
        with pytest.raises(WarehouseBusy, match="notebook"):
            with lake, SlotWriter(lake, wh, batch_size=2, summary=RunSummary("backfill", None), overlap=True) as writer:
                for load in loads:
                    writer.add(load)
        loaded = sorted({r[0] for r in wh.fetch_all("select account_id from nugen.account_runs")})
    lake_end = {n: end for stage, n, _, end in events if stage == "lake"}
    warehouse = [(n, start) for stage, n, start, _ in events if stage == "warehouse"]
    assert [n for n, _ in warehouse] == [0, 1], "loads in batch order, none after the busy one"
    assert all(lake_end[n] <= start for n, start in warehouse), "a batch loads only after its lake commits"
    assert loaded == sorted(a for a, n in batch_of.items() if n < 2)
    assert 2 in lake_end, "the busy batch had reached the lake: its rows are there for the next backfill"


@pytest.mark.parametrize("overlap", [False, True], ids=["in-turn", "overlapped"])
@pytest.mark.parametrize("accounts", [5, 6], ids=["last-batch-short", "last-batch-full"])
def test_only_the_last_batch_compacts_the_warehouse_tables(tmp_path: Path, overlap: bool, accounts: int) -> None:
    """A full batch is written when the next load arrives, so the batch that leaving the ``with``
    block writes is the last, whether short or full; only its load compacts (``Warehouse.load``)."""
    state = SimulatorState(5, accounts + 1, models=3, start=T0)
    compacted: list[bool] = []
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        wh.migrate()
        real = wh.load

        def load(batch, *, compact=True):  # type: ignore[no-untyped-def]
            compacted.append(compact)
            real(batch, compact=compact)

        wh.load = load  # type: ignore[method-assign]
        summary = RunSummary("run", T0)
        with (
            open_lake(LocalStorage(tmp_path / "lake", fsync=False)) as lake,
            SlotWriter(lake, wh, batch_size=2, summary=summary, overlap=overlap) as writer,
        ):
            for load_ in _loads(state, T0):
                writer.add(load_)
        ((rows,),) = wh.fetch_all("SELECT count(DISTINCT account_id) FROM nugen.model_snapshots")
    assert compacted == [False] * (len(compacted) - 1) + [True]
    assert len(compacted) == -(-accounts // 2) and rows == accounts
