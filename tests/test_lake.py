"""The Delta lake (issue 15): exact rows after reruns and backfills, one commit per table per batch,
concurrent writers, compaction, vacuum retention, time travel, the old layout's upgrade, fork safety.

Runs the real pipeline over HTTP against the simulator into real Delta tables (deltalake) and a real
DuckDB warehouse; expected rows come from the simulator's state, never from the pipeline's output.
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from nugen_etl import cli
from nugen_etl.pipeline import backfill, compact, open_configured_warehouse, run_snapshot, upgrade_lake
from nugen_etl.records import RawAnswer, SlotLoad
from nugen_etl.schemas import LAKE_ACCOUNT_RUNS, MODEL_METRICS, MODEL_SNAPSHOTS
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.sinks.compaction import load_state
from nugen_etl.sinks.lake import LAKE_TABLES, CommitRetry, Lake, LakeCommitConflict, LakeLocation
from nugen_etl.sinks.writer import SlotWriter
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import RunSummary
from nugen_etl.transform import answer_to_load

from .e2e_helpers import FETCH_OFFSET, REJECTED, SLOTS, T0, make_config
from .programs import program

DAY1, DAY2 = SLOTS[0].date(), SLOTS[-1].date()  # the slots cross midnight


# --- helpers ------------------------------------------------------------------------------------


def table_rows(root: Path, name: str, *, version: int | None = None) -> list[dict[str, Any]]:
    """Every row of a Delta table in primary-key order (read with deltalake, as users are told to)."""
    spec = {s.name: s for s in LAKE_TABLES}[name]
    table = DeltaTable(str(root / name), version=version).to_pyarrow_table()
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in spec.primary_key))


def expected_snapshots(
    state: SimulatorState, accounts: Sequence[str], slots: Sequence[datetime], at: dict[datetime, datetime] | None = None
) -> dict[tuple[str, datetime, str], int]:
    """(account, slot, model_id) -> usage_count, from the simulator's model at the fetch time."""
    out = {}
    for slot in slots:
        moment = (at or {}).get(slot, slot + FETCH_OFFSET)
        for account in accounts:
            if account == state.empty_account_id:
                continue
            for model in state.models_at(account, moment):
                out[(account, slot, model["id"])] = model["usage_count"]
    return out


def lake_snapshots(root: Path, *, version: int | None = None) -> dict[tuple[str, datetime, str], int]:
    rows = table_rows(root, "model_snapshots", version=version)
    keyed = {(r["account_id"], r["snapshot_at"], r["model_id"]): r["usage_count"] for r in rows}
    assert len(keyed) == len(rows), "a primary key appears twice in the lake"
    return keyed


def versions(root: Path) -> dict[str, int]:
    return {spec.name: DeltaTable(str(root / spec.name)).version() for spec in LAKE_TABLES}


def day_files(root: Path, name: str, day: date) -> list[str]:
    actions = pa.table(DeltaTable(str(root / name)).get_add_actions(flatten=True))
    return sorted(p for p, d in zip(actions["path"].to_pylist(), actions["partition.snapshot_date"].to_pylist(), strict=False) if d == day)


def commits_since(root: Path, name: str, version: int) -> list[dict[str, Any]]:
    return [c for c in DeltaTable(str(root / name)).history() if c["version"] > version]


@pytest.fixture
def world(tmp_path: Path):
    """Eight hourly slots of four simulator accounts (one of them always empty) plus a rejected key."""
    state = SimulatorState(seed=23, accounts=4, models=4, start=T0)
    with serve(state, host="127.0.0.1", port=0) as server:
        config = make_config(tmp_path / "data", server.base_url, state)
        for slot in SLOTS:
            state.set_time(slot + FETCH_OFFSET)
            run_snapshot(config, snapshot_at=slot)
        yield {"root": tmp_path / "data", "state": state, "config": config, "tmp": tmp_path}


def ok_accounts(state: SimulatorState) -> list[str]:
    return list(state.account_ids)


# --- layout and exact rows ------------------------------------------------------------------------


def test_tables_are_delta_partitioned_by_day_only_with_the_declared_schemas(world) -> None:
    root, state = world["root"], world["state"]
    for spec in LAKE_TABLES:
        table = DeltaTable(str(root / spec.name))
        assert table.metadata().partition_columns == ["snapshot_date"], spec.name
        assert table.to_pyarrow_table().schema.equals(spec.schema), spec.name
    assert lake_snapshots(root) == expected_snapshots(state, ok_accounts(state), SLOTS)
    folders = sorted(p.name for p in (root / "model_snapshots").iterdir() if p.is_dir())
    assert folders == ["_delta_log", f"snapshot_date={DAY1}", f"snapshot_date={DAY2}"]
    runs = table_rows(root, "account_runs")
    assert {(r["account_id"], r["snapshot_at"]) for r in runs} == {(a, s) for a in [*state.account_ids, REJECTED] for s in SLOTS}
    assert all(r["snapshot_date"] == r["snapshot_at"].date() for r in runs)
    outcomes = {r["account_id"]: r["outcome"] for r in runs}
    assert outcomes[REJECTED] == "auth_failed" and outcomes[state.empty_account_id] == "empty"


def test_each_run_is_one_commit_per_table_naming_its_slot_command_and_version(world) -> None:
    from nugen_etl import __version__

    root = world["root"]
    for spec in LAKE_TABLES:
        writes = [c for c in DeltaTable(str(root / spec.name)).history() if c["operation"] == "WRITE"]
        # batch_accounts = 2 and five accounts: three batches per slot, one commit per batch and table
        # (a batch whose only account failed has no model rows: its model tables get no commit)
        if spec is LAKE_ACCOUNT_RUNS:
            assert len(writes) == 3 * len(SLOTS)
        else:
            assert 2 * len(SLOTS) <= len(writes) <= 3 * len(SLOTS), spec.name
        assert {c["nugen.slot"] for c in writes} == {s.isoformat() for s in SLOTS}
        assert all(
            c["nugen.command"] == "run" and c["nugen.version"] == __version__ and c["nugen.run_id"].startswith("run-") for c in writes
        )


def test_rerun_of_one_account_replaces_only_its_rows(world) -> None:
    root, state, config = world["root"], world["state"], world["config"]
    slot, account = SLOTS[3], state.account_ids[0]
    before, start = lake_snapshots(root), versions(root)
    later = slot + timedelta(hours=2)  # the simulator's usage has moved on by then
    state.set_time(later)
    run_snapshot(config, snapshot_at=slot, accounts=config.select_accounts([account]))
    after = lake_snapshots(root)
    mine = expected_snapshots(state, [account], [slot], at={slot: later})
    assert {k: v for k, v in after.items() if k[:2] == (account, slot)} == mine
    assert mine != {k: v for k, v in before.items() if k[:2] == (account, slot)}, "the rerun must change something"
    assert {k: v for k, v in after.items() if k[:2] != (account, slot)} == {k: v for k, v in before.items() if k[:2] != (account, slot)}
    assert versions(root) == {name: v + 1 for name, v in start.items()}
    (commit,) = commits_since(root, "model_snapshots", start["model_snapshots"])
    assert account in commit["operationParameters"]["predicate"]
    assert all(other not in commit["operationParameters"]["predicate"] for other in state.account_ids if other != account)


def test_rerun_of_a_whole_slot_and_a_failed_rerun_keeps_the_success(world) -> None:
    root, state, config = world["root"], world["state"], world["config"]
    slot = SLOTS[5]
    later = slot + timedelta(hours=2)
    state.set_time(later)
    failing = state.account_ids[1]
    state.inject(failing, [Fault.status(503)] * config.api.max_attempts)
    before = lake_snapshots(root)
    run_snapshot(config, snapshot_at=slot)
    after = lake_snapshots(root)
    healthy = [a for a in state.account_ids if a != failing]
    assert {k: v for k, v in after.items() if k[1] == slot and k[0] != failing} == expected_snapshots(
        state, healthy, [slot], at={slot: later}
    )
    assert {k: v for k, v in after.items() if k[:2] == (failing, slot)} == {k: v for k, v in before.items() if k[:2] == (failing, slot)}, (
        "a failed rerun keeps the rows"
    )
    runs = {(r["account_id"], r["snapshot_at"]): r["outcome"] for r in table_rows(root, "account_runs")}
    assert runs[(failing, slot)] == "ok", "a failure never overwrites a recorded success"
    assert {k: v for k, v in after.items() if k[1] != slot} == {k: v for k, v in before.items() if k[1] != slot}


def test_backfill_rewrites_a_day_in_one_commit_per_table_and_one_warehouse_load(world, monkeypatch) -> None:
    root, state, config, tmp = world["root"], world["state"], world["config"], world["tmp"]
    live = {k: v for k, v in lake_snapshots(root).items() if k[1].date() == DAY1}
    live_runs = [r for r in table_rows(root, "account_runs") if r["snapshot_date"] == DAY1]
    # a fresh root holding only the raw archive: the lake and the warehouse are rebuilt from it
    fresh = tmp / "rebuilt"
    shutil.copytree(root / "raw", fresh / "raw")
    rebuilt = make_config(fresh, config.api.base_url, state)
    loads: list[int] = []
    from nugen_etl.warehouse.base import Warehouse

    real_load = Warehouse.load
    monkeypatch.setattr(Warehouse, "load", lambda self, batch, **kw: (loads.append(len(batch)), real_load(self, batch, **kw))[1])
    summary = backfill(rebuilt, first=DAY1, last=DAY1)
    assert summary.exit_code == 0
    assert lake_snapshots(fresh) == live
    assert [r for r in table_rows(fresh, "account_runs")] == live_runs
    day1_slots = [s for s in SLOTS if s.date() == DAY1]
    accounts = len(state.account_ids) + 1
    assert loads == [accounts * len(day1_slots)], "one warehouse transaction for the whole day"
    for spec in LAKE_TABLES:
        writes = [c for c in DeltaTable(str(fresh / spec.name)).history() if c["operation"] == "WRITE"]
        assert len(writes) == 1 and writes[0]["nugen.command"] == "backfill", spec.name
    # the whole range: one commit per table and day
    summary = backfill(rebuilt, first=DAY1, last=DAY2)
    assert lake_snapshots(fresh) == lake_snapshots(root)
    writes = [c for c in DeltaTable(str(fresh / "model_snapshots")).history() if c["operation"] == "WRITE"]
    assert len(writes) == 3
    with open_configured_warehouse(rebuilt) as wh:
        ((n,),) = wh.fetch_all("select count(*) from nugen.model_snapshots")
    assert n == len(lake_snapshots(root))


def test_time_travel_shows_the_rows_before_a_rerun(world) -> None:
    root, state, config = world["root"], world["state"], world["config"]
    slot, account = SLOTS[2], state.account_ids[2]
    before_version, before = DeltaTable(str(root / "model_snapshots")).version(), lake_snapshots(root)
    state.set_time(slot + timedelta(hours=2))
    run_snapshot(config, snapshot_at=slot, accounts=config.select_accounts([account]))
    assert lake_snapshots(root) != before
    assert lake_snapshots(root, version=before_version) == before


# --- compaction and retention ---------------------------------------------------------------------


def test_compaction_keeps_the_rows_cuts_the_files_and_is_done_once(world, capsys) -> None:
    root, config, state = world["root"], world["config"], world["state"]
    rows = {spec.name: table_rows(root, spec.name) for spec in LAKE_TABLES}
    assert len(day_files(root, "model_snapshots", DAY1)) > 2
    now = datetime.combine(DAY2 + timedelta(days=1), datetime.min.time(), UTC) + 3 * config.granularity
    report = compact(config, now=now)
    assert report.days == [DAY1, DAY2]
    for spec in LAKE_TABLES:
        assert table_rows(root, spec.name) == rows[spec.name], spec.name
        for day in (DAY1, DAY2):
            assert 1 <= len(day_files(root, spec.name, day)) <= 2, (spec.name, day)
            assert load_state(LocalStorage(root))[spec.name][day.isoformat()] == day_files(root, spec.name, day)
    assert compact(config, now=now).days == [], "an untouched compacted day is not rewritten"
    # a rerun into a compacted day makes it due again, and only it
    state.set_time(SLOTS[0] + FETCH_OFFSET)
    run_snapshot(config, snapshot_at=SLOTS[0], accounts=config.select_accounts([state.account_ids[0]]))
    assert compact(config, now=now).days == [DAY1]
    # an open day is not compacted by default; the command line compacts a named day
    early = datetime.combine(DAY2, datetime.min.time(), UTC) + timedelta(hours=1)
    assert compact(config, now=early).days == []
    assert cli.main(["compact", "--config", str(write_toml(config, world["tmp"])), "--day", str(DAY2)]) == 0
    assert f"compacted {DAY2}" in capsys.readouterr().out


def write_toml(config, folder: Path) -> Path:
    path = folder / "nugen.toml"
    path.write_text(
        f'[storage]\nroot = "{config.storage_root}"\nfsync = false\n'
        f'[warehouse]\nurl = "{config.warehouse.url}"\n'
        '[[accounts]]\nid = "acct-0001"\napi_key_env = "NUGEN_TEST_UNUSED_KEY"\n',
        encoding="utf-8",
    )
    return path


def test_vacuum_keeps_what_the_retention_needs_and_deletes_the_rest(world) -> None:
    root, config = world["root"], world["config"]
    old_version = DeltaTable(str(root / "model_snapshots")).version()
    old_rows = lake_snapshots(root)
    old_files = set(day_files(root, "model_snapshots", DAY1))
    now = datetime.combine(DAY2 + timedelta(days=1), datetime.min.time(), UTC) + 3 * config.granularity
    report = compact(config, now=now)  # default retention: 168 h, nothing compacted away is deleted
    assert report.vacuumed == {spec.name: 0 for spec in LAKE_TABLES}
    assert all((root / "model_snapshots" / f).exists() for f in old_files)
    assert lake_snapshots(root, version=old_version) == old_rows, "time travel within the retention"
    from dataclasses import replace

    report = compact(replace(config, vacuum_retention_hours=0), now=now)
    assert report.vacuumed["model_snapshots"] >= len(old_files)
    assert not any((root / "model_snapshots" / f).exists() for f in old_files)
    assert lake_snapshots(root) == old_rows, "the current version is whole"


# --- concurrency ----------------------------------------------------------------------------------

ACCOUNTS = [f"acct-{i:04d}" for i in range(1, 25)]
CONCURRENT_SLOT = datetime(2026, 3, 2, 7, tzinfo=UTC)


def synthetic_load(account_id: str, slot: datetime, *, version: int, models: int = 5) -> SlotLoad:
    import json

    body = json.dumps(
        {
            "domain_aligned_models": [
                {
                    "id": f"aligned-model-{account_id}-{i}",
                    "alignment_id": f"alignment-{i}",
                    "name": f"model {i}",
                    "usage_count": version * 100 + i,
                    "performance_metrics": {"accuracy": 0.5 + i / 100},
                }
                for i in range(models)
            ]
        }
    ).encode()
    raw = RawAnswer(
        account_id=account_id,
        snapshot_at=slot,
        fetched_at=slot + timedelta(minutes=1),
        http_status=200,
        body=body,
        headers={"content-type": "application/json"},
    )
    return answer_to_load(raw)


def write_batch(root: str, accounts: Sequence[str], version: int) -> None:
    """One writer: its own Lake, one batch of ``accounts`` (a separate process or thread)."""
    lake = Lake(LakeLocation(root), metadata={"nugen.command": "test"}, retry=CommitRetry(attempts=20, base_delay_s=0.02))
    lake.write([synthetic_load(a, CONCURRENT_SLOT, version=version) for a in accounts])


def check_concurrent_result(root: Path, batches: list[list[str]], version: int) -> None:
    rows = table_rows(root, "model_snapshots")
    assert sorted((r["account_id"], r["model_id"]) for r in rows) == sorted(
        (a, f"aligned-model-{a}-{i}") for batch in batches for a in batch for i in range(5)
    )
    assert {r["usage_count"] // 100 for r in rows} == {version}
    runs = table_rows(root, "account_runs")
    assert sorted(r["account_id"] for r in runs) == sorted(a for b in batches for a in b)


def contiguous(n: int) -> list[list[str]]:
    size = len(ACCOUNTS) // n
    return [ACCOUNTS[i : i + size] for i in range(0, len(ACCOUNTS), size)]


def test_concurrent_batches_of_one_slot_in_threads(tmp_path: Path) -> None:
    batches = contiguous(6)
    Lake(LakeLocation(str(tmp_path))).table(MODEL_SNAPSHOTS)
    for version in (1, 2):  # a first write, then a rerun of the whole slot by the same writers
        errors: list[BaseException] = []

        def run(batch: list[str], version: int = version) -> None:
            try:
                write_batch(str(tmp_path), batch, version)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        check_concurrent_result(tmp_path, batches, version)


def test_concurrent_batches_of_one_slot_in_processes(tmp_path: Path) -> None:
    batches = contiguous(4)
    ctx = multiprocessing.get_context("spawn")  # delta-rs' runtime does not survive fork()
    for version in (1, 2):
        with ctx.Pool(len(batches)) as pool:
            pool.starmap(write_batch, [(str(tmp_path), b, version) for b in batches])
        check_concurrent_result(tmp_path, batches, version)
    writes = [c for c in DeltaTable(str(tmp_path / "model_snapshots")).history() if c["operation"] == "WRITE"]
    assert len(writes) == 2 * len(batches), "one commit per batch, none lost or doubled"


def test_overlapping_writers_of_one_account_leave_one_copy(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    same = [ACCOUNTS[:3]] * 4  # four writers of the same accounts and slot: real conflicts
    with ctx.Pool(4) as pool:
        pool.starmap(write_batch, [(str(tmp_path), b, 3) for b in same])
    check_concurrent_result(tmp_path, [ACCOUNTS[:3]], 3)


def test_a_conflict_past_the_bound_fails_only_its_batch(tmp_path: Path, monkeypatch) -> None:
    """Retry logic (a stand-in write that conflicts): bounded, then only the batch's accounts fail."""
    import deltalake
    from deltalake.exceptions import CommitFailedError

    real = deltalake.write_deltalake
    calls: list[str] = []

    def conflicting(table, data, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw["predicate"])
        if "acct-0001" in kw["predicate"]:
            raise CommitFailedError("Transaction failed: concurrent transaction deleted the same data")
        return real(table, data, **kw)

    monkeypatch.setattr(deltalake, "write_deltalake", conflicting)
    lake = Lake(LakeLocation(str(tmp_path)), retry=CommitRetry(attempts=3, base_delay_s=0.001))
    with pytest.raises(LakeCommitConflict, match=r"acct-0001.*after 3 attempts"):
        lake.write([synthetic_load("acct-0001", CONCURRENT_SLOT, version=1)])
    assert len(calls) == 3 * 2, "each data table's commit tried 3 times, no more"

    class NoWarehouse:
        loaded: list[list[str]] = []

        def load(self, batch, *, compact=True):  # type: ignore[no-untyped-def]
            self.loaded.append([ld.run.account_id for ld in batch])

    summary = RunSummary(command="run", snapshot_at=CONCURRENT_SLOT)
    warehouse = NoWarehouse()
    with SlotWriter(lake, warehouse, batch_size=2, summary=summary) as writer:  # type: ignore[arg-type]
        for account in ("acct-0001", "acct-0002", "acct-0003", "acct-0004"):
            writer.add(synthetic_load(account, CONCURRENT_SLOT, version=1))
    assert summary.failed_accounts == ["acct-0001", "acct-0002"]
    assert "lake write failed" in summary.errors["acct-0001"]
    assert warehouse.loaded == [["acct-0003", "acct-0004"]]
    assert sorted({r["account_id"] for r in table_rows(tmp_path, "model_snapshots")}) == ["acct-0003", "acct-0004"]


def test_no_deltalake_object_exists_before_the_first_write() -> None:
    """Fork safety: importing the pipeline, the Airflow tasks and opening a lake loads no deltalake."""
    done = subprocess.run([sys.executable, program("fork_probe"), "/tmp/nugen-fork-probe"], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "CLEAN", done.stdout + done.stderr


# --- the old layout ----------------------------------------------------------------------------


def test_the_old_layout_is_refused_then_upgraded_without_deleting_anything(world) -> None:
    root, state, config = world["root"], world["state"], world["config"]
    lake_rows = lake_snapshots(root)
    # turn the root into a 0.1 root: per-slot files instead of the Delta tables
    for spec in LAKE_TABLES:
        shutil.rmtree(root / spec.name)
    old_files = {}
    for spec in (MODEL_SNAPSHOTS, MODEL_METRICS):
        for account in state.account_ids[:2]:
            path = root / spec.name / f"snapshot_date={DAY1}" / f"account_id={account}" / f"part-{SLOTS[0]:%Y%m%dT%H%M%SZ}.parquet"
            path.parent.mkdir(parents=True)
            pq.write_table(spec.schema.empty_table(), path)
            old_files[path.relative_to(root)] = path.read_bytes()
    archived = len(list((root / "raw").rglob(f"{SLOTS[-1]:%Y%m%dT%H%M%SZ}__*.raw.gz")))
    state.set_time(SLOTS[-1] + FETCH_OFFSET)
    summary = run_snapshot(config, snapshot_at=SLOTS[-1])
    assert summary.failed_accounts, "nothing can be written into the old layout"
    message = next(iter(summary.errors.values()))
    assert "nugen-etl upgrade-lake" in message and "per-slot Parquet" in message
    assert all((root / rel).read_bytes() == data for rel, data in old_files.items()), "old files untouched"
    raw = list((root / "raw").rglob(f"{SLOTS[-1]:%Y%m%dT%H%M%SZ}__*.raw.gz"))
    assert len(raw) == archived + len(state.account_ids) + 1, "the raw archive is written even so"

    moved, rebuilt = upgrade_lake(config)
    assert moved == ["model_snapshots", "model_metrics"]
    assert all((root / "legacy-parquet" / rel).read_bytes() == data for rel, data in old_files.items())
    assert rebuilt is not None and rebuilt.exit_code == 0
    assert lake_snapshots(root) == lake_rows


def test_changed_storage_options_reopen_the_tables_and_unchanged_ones_keep_them(tmp_path: Path) -> None:
    """The lake asks its location for the current options before each use (rotated S3 credentials, see
    tests/test_s3_storage.py::test_rotated_credentials_reach_the_next_commit): while they stay the same
    the open tables are kept; once they change, the tables are opened again with the new ones."""
    options = {"timeout": "30s"}
    lake = Lake(LakeLocation(str(tmp_path), dict(options), refresh=lambda: dict(options)))
    state = SimulatorState(5, 2, models=2, start=T0)
    account = state.account_ids[0]

    def load(slot: datetime) -> SlotLoad:
        return answer_to_load(
            RawAnswer(account_id=account, snapshot_at=slot, fetched_at=slot, http_status=200, body=state.body_at(account, slot))
        )

    lake.write([load(T0)])
    opened = lake.table(MODEL_SNAPSHOTS)
    lake.write([load(T0 + timedelta(hours=1))])
    assert lake.table(MODEL_SNAPSHOTS) is opened, "same options: the open table is kept"
    options["timeout"] = "31s"
    lake.write([load(T0 + timedelta(hours=2))])
    assert lake.table(MODEL_SNAPSHOTS) is not opened and lake.location.storage_options == {"timeout": "31s"}
    assert lake.read(MODEL_SNAPSHOTS).num_rows == 3 * state.body_at(account, T0).count(b'"id"')


def test_a_replace_of_slots_with_different_accounts_touches_exactly_those_pairs(tmp_path: Path) -> None:
    """The replace-where predicate groups slots that share their accounts: a batch that is not the full
    (slots x accounts) square still replaces exactly its own (account, slot) pairs."""
    lake = Lake(LakeLocation(str(tmp_path)))
    slots = [CONCURRENT_SLOT + timedelta(hours=h) for h in range(3)]
    accounts = ACCOUNTS[:3]
    lake.write([synthetic_load(a, s, version=1) for a in accounts for s in slots])
    replaced = {
        (accounts[0], slots[0]),
        (accounts[0], slots[1]),
        (accounts[1], slots[0]),
        (accounts[1], slots[1]),
        (accounts[2], slots[2]),
        (accounts[0], slots[2]),
    }
    lake.write([synthetic_load(a, s, version=2) for a, s in sorted(replaced)])
    rows = table_rows(tmp_path, "model_snapshots")
    versions = {(r["account_id"], r["snapshot_at"]): r["usage_count"] // 100 for r in rows}
    assert len(rows) == 5 * len(accounts) * len(slots), "every pair keeps exactly one copy of its rows"
    assert versions == {(a, s): 2 if (a, s) in replaced else 1 for a in accounts for s in slots}
