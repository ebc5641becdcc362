"""The grouped replay (many archived slots flattened per call) gives exactly the slot-by-slot replay:
same loads in the same order, same tables, same errors -- with newer failures over older successes,
unreadable objects, transform failures and ``not_observed`` slots mixed into one group."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nugen_etl import replay, transform
from nugen_etl.records import RawAnswer
from nugen_etl.simulator import SimulatorState
from nugen_etl.sinks.archive import list_archived_slots, write_raw_answer
from nugen_etl.storage import LocalStorage
from nugen_etl.summary import RunSummary
from tests.programs import program
from tests.test_hostile_input import BODY as HOSTILE_BODY

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _archive(root: Path) -> None:
    state = SimulatorState(3, 3, models=6, start=T0)
    for a_index, account_id in enumerate(state.account_ids):
        for hour in range(6):
            slot = T0 + timedelta(hours=hour)
            fetched = slot + timedelta(minutes=3)

            def put(body: bytes, status: int | None = 200, later: int = 0, error: str | None = None) -> None:
                write_raw_answer(
                    root,
                    RawAnswer(
                        account_id=account_id,
                        snapshot_at=slot,
                        fetched_at=fetched + timedelta(seconds=later),
                        http_status=status,
                        body=body,
                        error=error,
                    ),
                    fsync=False,
                )

            put(state.body_at(account_id, fetched))
            if hour == 1:  # a newer failure never hides the older success
                put(b"", status=None, later=5, error="timed out")
            if hour == 3 and a_index == 0:
                put(HOSTILE_BODY, later=7)
            if hour == 4 and a_index == 1:  # an unreadable newest object
                put(b"x", later=9)
                newest = sorted((root / "raw" / f"account_id={account_id}").rglob("*.raw.gz"))[-1]
                newest.write_bytes(b"not gzip")
            if hour == 5 and a_index == 2:
                put(json.dumps({"domain_aligned_models": "nope"}).encode(), later=2)


def _loads(storage, items, summary, grouped: bool):
    if grouped:
        return list(replay.replay_items(storage, items, summary))
    out = []
    for account_id, slot, keys in items:
        if keys is None:
            out.append(next(replay.replay_items(storage, [(account_id, slot, None)], RunSummary("x", None))))
            continue
        load = replay.replay_archived(storage, account_id, slot, keys, summary)
        if load is not None:
            out.append(load)
    return out


@pytest.mark.parametrize("group", [1, 4, 48])
def test_grouped_replay_equals_slot_by_slot(tmp_path: Path, monkeypatch, group: int) -> None:
    _archive(tmp_path)
    storage = LocalStorage(tmp_path, fsync=False)
    items = list(list_archived_slots(storage, start=T0, end=T0 + timedelta(days=1)))
    items.insert(3, ("acct-missing", T0, None))
    monkeypatch.setattr(replay, "REPLAY_GROUP", group)
    want_summary, got_summary = RunSummary("backfill", None), RunSummary("backfill", None)
    want = _loads(storage, items, want_summary, grouped=False)
    got = _loads(storage, items, got_summary, grouped=True)
    assert [g.run for g in got] == [w.run for w in want]
    assert got_summary.errors == want_summary.errors and want_summary.errors
    for g, w in zip(got, want, strict=False):
        assert (g.tables is None) == (w.tables is None)
        if w.tables is not None:
            assert g.tables.keys() == w.tables.keys()
            assert all(g.tables[k].equals(w.tables[k]) for k in w.tables)
    assert any(w.run.quarantined_count for w in want) and any(w.tables is None for w in want)


def test_a_transform_failure_in_a_group_costs_only_its_slot(tmp_path: Path, monkeypatch) -> None:
    _archive(tmp_path)
    storage = LocalStorage(tmp_path, fsync=False)
    items = list(list_archived_slots(storage, start=T0, end=T0 + timedelta(days=1)))
    bad = items[2][0], items[2][1]
    real = transform.flatten_models

    def flaky(models, *, account_id, snapshot_at, fetched_at):
        if (account_id, snapshot_at) == bad:
            raise RuntimeError("boom")
        return real(models, account_id=account_id, snapshot_at=snapshot_at, fetched_at=fetched_at)

    def batch(answers):
        return [flaky(m, account_id=a, snapshot_at=s, fetched_at=f) for m, a, s, f in answers]

    monkeypatch.setattr(transform, "flatten_models", flaky)
    monkeypatch.setattr(replay, "flatten_answers", batch)
    got = list(replay.replay_items(storage, items, RunSummary("backfill", None)))
    failed = [g.run for g in got if g.run.outcome == "failed" and "transform failed" in (g.run.error or "")]
    assert [(r.account_id, r.snapshot_at) for r in failed] == [bad]
    assert sum(1 for g in got if g.tables is not None) >= len(items) - 4


def _live_answers() -> list[RawAnswer]:
    state = SimulatorState(4, 6, models=5, start=T0)
    slot = T0 + timedelta(hours=1)
    raws = [
        RawAnswer(
            account_id=a,
            snapshot_at=slot,
            fetched_at=slot + timedelta(minutes=3),
            http_status=200,
            body=state.body_at(a, slot + timedelta(minutes=3)),
        )
        for a in state.account_ids
    ]
    raws.append(RawAnswer(account_id="acct-hostile", snapshot_at=slot, fetched_at=slot, http_status=200, body=HOSTILE_BODY))
    raws.append(RawAnswer(account_id="acct-down", snapshot_at=slot, fetched_at=slot, http_status=None, body=b"", error="timed out"))
    return raws


def test_answers_completed_together_load_as_one_by_one() -> None:
    raws = _live_answers()
    got = transform.loads_of(raws)
    want = [transform.load_or_failure(raw) for raw in raws]
    assert [g.run for g in got] == [w.run for w in want]
    for g, w in zip(got, want, strict=False):
        assert (g.tables is None) == (w.tables is None)
        if w.tables is not None:
            assert all(g.tables[k].equals(w.tables[k]) for k in w.tables)


def test_a_transform_failure_among_answers_completed_together_costs_only_its_account(monkeypatch) -> None:
    raws = _live_answers()
    real = transform.flatten_models

    def flaky(models, *, account_id, snapshot_at, fetched_at):
        if account_id == "acct-hostile":
            raise RuntimeError("boom")
        return real(models, account_id=account_id, snapshot_at=snapshot_at, fetched_at=fetched_at)

    monkeypatch.setattr(transform, "flatten_models", flaky)
    monkeypatch.setattr(
        transform, "flatten_answers", lambda answers: [flaky(m, account_id=a, snapshot_at=s, fetched_at=f) for m, a, s, f in answers]
    )
    got = {load.run.account_id: load.run for load in transform.loads_of(raws)}
    assert got["acct-hostile"].outcome == "failed" and "transform failed: RuntimeError: boom" in got["acct-hostile"].error
    assert got["acct-down"].outcome == "failed" and got["acct-down"].error == "timed out"
    assert sum(r.outcome in ("ok", "empty") for r in got.values()) == len(raws) - 2


def test_worker_processes_hand_over_the_same_units_through_spooled_files(tmp_path: Path, monkeypatch) -> None:
    """Replay workers write each unit's tables to Arrow IPC files that the backfill maps: the units equal
    the in-process replay's, the spool folder is gone afterwards, and a folder a killed backfill left
    behind (its process is gone) is removed by the next one."""
    import os
    import subprocess
    import sys
    import tempfile

    root = tmp_path / "archive"
    _archive(root)
    storage = LocalStorage(root, fsync=False)
    accounts = SimulatorState(3, 3, models=6, start=T0).account_ids
    monkeypatch.setattr(replay, "REPLAY_ACCOUNTS_PER_UNIT", 1)  # 3 units: more than the 2 workers
    spool_root = tmp_path / "tmp"
    spool_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_root))
    monkeypatch.setattr(tempfile, "tempdir", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = spool_root / f"{replay.SPOOL_PREFIX}{int(dead.stdout)}-left"
    stale.mkdir()
    (stale / "x-model_snapshots.arrow").write_bytes(b"left by a killed backfill")
    alive = spool_root / f"{replay.SPOOL_PREFIX}{os.getpid()}-busy"
    alive.mkdir()

    day = T0.date()
    in_process = list(replay.replay_days(storage, [day], accounts, workers=1))
    mapped: list[int] = []
    real_unspooled = replay.ReplayedUnit.unspooled

    def unspooled(unit: replay.ReplayedUnit) -> replay.ReplayedUnit:
        mapped.append(len(unit.spooled or {}))
        return real_unspooled(unit)

    monkeypatch.setattr(replay.ReplayedUnit, "unspooled", unspooled)
    spooled = list(replay.replay_days(storage, [day], accounts, workers=2))
    tables = len(in_process[0].tables)  # what flattening writes: model_snapshots, model_metrics, ...
    assert tables == 5 and mapped == [tables] * 3, "every unit came from the workers as spooled tables"
    assert len(spooled) == len(in_process) == 3
    for a, b in zip(in_process, spooled, strict=False):
        assert b.spooled is None and a.runs == b.runs and a.offsets == b.offsets and a.errors == b.errors
        assert a.tables.keys() == b.tables.keys() and all(a.tables[n].equals(b.tables[n]) for n in a.tables)
    assert sorted(p.name for p in spool_root.iterdir()) == [alive.name], "stale folder removed, ours cleaned up"


def test_without_a_usable_spool_the_units_still_arrive_whole(tmp_path: Path, monkeypatch, caplog) -> None:
    """No temporary folder can be made (the units go through the pipe), or a spooled unit's files went
    missing (it is replayed in the backfill's process): the units are the same either way."""
    import tempfile

    root = tmp_path / "archive"
    _archive(root)
    storage = LocalStorage(root, fsync=False)
    accounts = SimulatorState(3, 3, models=6, start=T0).account_ids
    monkeypatch.setattr(replay, "REPLAY_ACCOUNTS_PER_UNIT", 1)
    day = T0.date()
    expected = list(replay.replay_days(storage, [day], accounts, workers=1))

    def same(units: list[replay.ReplayedUnit]) -> bool:
        return len(units) == len(expected) and all(
            a.runs == b.runs and all(a.tables[n].equals(b.tables[n]) for n in a.tables) for a, b in zip(expected, units, strict=False)
        )

    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("TMPDIR", str(missing))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(missing))  # mkdtemp there fails
    assert same(list(replay.replay_days(storage, [day], accounts, workers=2)))
    assert "sending them whole" in caplog.text and "replay workers failed" not in caplog.text
    caplog.clear()

    monkeypatch.undo()
    monkeypatch.setattr(replay, "REPLAY_ACCOUNTS_PER_UNIT", 1)
    real_unspooled = replay.ReplayedUnit.unspooled

    def files_gone(unit: replay.ReplayedUnit) -> replay.ReplayedUnit:
        for path in (unit.spooled or {}).values():
            Path(path).unlink()
        return real_unspooled(unit)

    monkeypatch.setattr(replay.ReplayedUnit, "unspooled", files_gone)
    assert same(list(replay.replay_days(storage, [day], accounts, workers=2)))
    assert caplog.text.count("replaying it in this process") == 3


def test_a_replay_worker_runs_below_its_backfill_and_exits_with_it() -> None:
    """A worker lowers its own CPU priority (the backfill's process sets the pace) and watches its parent."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, program("replay_worker_priority")], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True"]
