"""End to end over real HTTP on loopback: simulator -> raw archive -> Delta lake -> warehouse views.

Expected numbers are computed from the simulator's state model (tests/e2e_helpers.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from nugen_etl import __version__
from nugen_etl.pipeline import backfill, open_configured_warehouse, run_snapshot
from nugen_etl.simulator import Fault, SimulatorState, serve

from .conftest import ENGINES, fresh_warehouse_url
from .e2e_helpers import (
    FETCH_OFFSET,
    REJECTED,
    SLOTS,
    T0,
    canonical_accuracy,
    expected_status_changes,
    expected_usage_daily,
    make_config,
    observations,
)
from .state_helpers import lake_commits_since, lake_dump, lake_version
from .test_rollups import assert_views_equal_reference, install_reference

FAILING = "acct-0002"


@pytest.fixture(scope="module", params=ENGINES)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Eight hourly slots; acct-0002 fails (503s) in the last one; acct-bad's key is always rejected."""
    root = tmp_path_factory.mktemp("e2e")
    state = SimulatorState(seed=11, accounts=4, models=5, start=T0)
    with serve(state, host="127.0.0.1", port=0) as server:
        config = make_config(root, server.base_url, state, warehouse_url=fresh_warehouse_url(request, request.param, root))
        summaries = []
        for n, slot in enumerate(SLOTS):
            if n == len(SLOTS) - 1:
                state.inject(FAILING, [Fault.status(503)] * config.api.max_attempts)
            state.set_time(slot + FETCH_OFFSET)
            summaries.append(run_snapshot(config, snapshot_at=slot))
        yield {"root": root, "state": state, "server": server, "config": config, "summaries": summaries}


def views(config) -> dict[str, list[tuple]]:
    with open_configured_warehouse(config) as wh:
        return {
            "usage": wh.fetch_all(
                "select account_id, model_key, day, usage_count, usage_delta from nugen.model_usage_daily order by 1, 2, 3"
            ),
            "accuracy": wh.fetch_all("select account_id, model_key, day, accuracy from nugen.model_accuracy_daily order by 1, 2, 3"),
            "latest": wh.fetch_all(
                "select account_id, model_key, model_id, first_seen_at, last_seen_at, is_present from nugen.models_latest order by 1, 2"
            ),
            "status": wh.fetch_all(
                "select account_id, model_key, changed_at, from_status, to_status, "
                "from_deployment_status, to_deployment_status from nugen.model_status_changes "
                "order by 1, 2, 3"
            ),
            "health": wh.fetch_all(
                "select account_id, last_success_at, last_outcome, consecutive_failures from nugen.account_health order by 1"
            ),
            "runs": wh.fetch_all(
                "select account_id, snapshot_at, outcome, http_status, model_count, attempts from nugen.account_runs order by 1, 2"
            ),
        }


def ok_slots(account_id: str) -> list:
    return SLOTS[:-1] if account_id == FAILING else SLOTS


def test_outcomes_per_account_and_exit_codes(world) -> None:
    state, summaries = world["state"], world["summaries"]
    for summary in summaries[:-1]:
        assert summary.exit_code == 1 and summary.failed_accounts == [REJECTED]
    assert summaries[-1].failed_accounts == [FAILING, REJECTED]
    runs = {(a, s): (o, st, n, att) for a, s, o, st, n, att in views(world["config"])["runs"]}
    for slot in SLOTS:
        for account in state.account_ids:
            outcome, status, count, _ = runs[(account, slot)]
            if account == state.empty_account_id:
                assert (outcome, status, count) == ("empty", 404, 0)
            elif account == FAILING and slot == SLOTS[-1]:
                assert (outcome, status) == ("failed", 503)
                assert runs[(account, slot)][3] == world["config"].api.max_attempts
            else:
                assert (outcome, status, count) == ("ok", 200, len(state.models_at(account, slot + FETCH_OFFSET)))
        assert runs[(REJECTED, slot)][:2] == ("auth_failed", 401)


def test_usage_daily_matches_the_simulator(world) -> None:
    state = world["state"]
    got = {(a, k, d): (u, dl) for a, k, d, u, dl in views(world["config"])["usage"]}
    expected = {}
    for account in state.account_ids:
        for (key, day), value in expected_usage_daily(observations(state, account, ok_slots(account))).items():
            expected[(account, key, day)] = value
    assert {k: (int(u), None if d is None else int(d)) for k, (u, d) in got.items()} == expected
    # the simulator's model 2 resets its counter inside the window: the delta counts the new value
    reset = state.reset_at("acct-0001", 2)
    assert reset is not None and SLOTS[0] < reset <= SLOTS[-1]


def test_deploy_keeps_the_series(world) -> None:
    state = world["state"]
    deploy = state.deploy_at("acct-0001", 1)
    assert SLOTS[0] < deploy <= SLOTS[-1]
    before = state.models_at("acct-0001", SLOTS[0] + FETCH_OFFSET)[1]
    after = state.models_at("acct-0001", SLOTS[-1] + FETCH_OFFSET)[1]
    assert before["id"] != after["id"] and before["alignment_id"] == after["alignment_id"]
    latest = {(a, k): (m, first, last) for a, k, m, first, last, _ in views(world["config"])["latest"]}
    model_id, first_seen, last_seen = latest[("acct-0001", before["alignment_id"])]
    assert (model_id, first_seen, last_seen) == (after["id"], SLOTS[0], SLOTS[-1])


def test_accuracy_and_status_changes(world) -> None:
    state, v = world["state"], views(world["config"])
    acc = {(a, k, d): x for a, k, d, x in v["accuracy"]}
    status = {(k, c, fs, ts, fd, td) for a, k, c, fs, ts, fd, td in v["status"] if a == "acct-0001"}
    series = observations(state, "acct-0001", SLOTS)
    for key, obs in series.items():
        for day in {o[0].date() for o in obs}:
            last = [o for o in obs if o[0].date() == day][-1]
            assert acc[("acct-0001", key, day)] == pytest.approx(last[2])
    assert status == expected_status_changes(series) and status


def test_failed_account_retires_nothing(world) -> None:
    state, v = world["state"], views(world["config"])
    present = {(a, k): p for a, k, _, _, _, p in v["latest"]}
    failing_keys = {m["alignment_id"] or m["id"] for m in state.models_at(FAILING, SLOTS[-2] + FETCH_OFFSET)}
    assert failing_keys and all(present[(FAILING, k)] for k in failing_keys)
    health = {a: (s, o, n) for a, s, o, n in v["health"]}
    assert health[FAILING] == (SLOTS[-2], "failed", 1)
    assert health[REJECTED] == (None, "auth_failed", len(SLOTS))
    assert health["acct-0001"] == (SLOTS[-1], "ok", 0)
    assert health[state.empty_account_id] == (SLOTS[-1], "empty", 0)


def test_lake_is_readable_by_duckdb_and_pyarrow(world) -> None:
    """Through deltalake's Arrow dataset (the offline reader): DuckDB and pyarrow see every row once."""
    root, state = world["root"], world["state"]
    expected_rows = sum(len(state.models_at(a, s + FETCH_OFFSET)) for a in state.account_ids for s in ok_slots(a))
    snapshots = DeltaTable(str(root / "model_snapshots")).to_pyarrow_dataset()
    db = duckdb.connect()
    db.register("snapshots", snapshots)
    db.register("metrics", DeltaTable(str(root / "model_metrics")).to_pyarrow_dataset())
    ((count, accounts, days),) = db.sql(
        "select count(*), count(distinct account_id), count(distinct snapshot_date) from snapshots"
    ).fetchall()
    with_models = [a for a in state.account_ids if a != state.empty_account_id]
    assert (count, accounts, days) == (expected_rows, len(with_models), len({s.date() for s in SLOTS}))
    table = snapshots.to_table()
    assert table.num_rows == expected_rows
    assert set(table.column("snapshot_date").to_pylist()) == {s.date() for s in SLOTS}
    first = state.models_at("acct-0001", SLOTS[0] + FETCH_OFFSET)[0]
    row = db.execute(
        "select usage_count, accuracy from snapshots where model_id = ? and snapshot_at = ?", [first["id"], SLOTS[0]]
    ).fetchall()
    assert row == [(first["usage_count"], pytest.approx(canonical_accuracy(first)))]
    ((metric_rows, metric_accounts),) = db.sql("select count(*), count(distinct account_id) from metrics").fetchall()
    assert metric_rows > 0 and metric_accounts == len(with_models)
    runs = DeltaTable(str(root / "account_runs")).to_pyarrow_table()
    assert runs.num_rows == len(SLOTS) * (len(state.account_ids) + 1)
    failed = runs.filter(pc.equal(runs["account_id"], FAILING)).sort_by("snapshot_at")
    assert failed["outcome"].to_pylist() == ["ok"] * (len(SLOTS) - 1) + ["failed"]


def test_rerunning_a_slot_changes_nothing(world) -> None:
    config, state, root = world["config"], world["state"], world["root"]
    slot = SLOTS[3]
    before_views = views(config)
    before_lake = lake_dump(root)
    before_version = lake_version(root, "model_snapshots")
    state.set_time(slot + FETCH_OFFSET)
    run_snapshot(config, snapshot_at=slot)
    run_snapshot(config, snapshot_at=slot)
    assert views(config) == before_views
    assert lake_dump(root) == before_lake
    with open_configured_warehouse(config) as wh:
        ((dupes,),) = wh.fetch_all("select count(*) - count(distinct (account_id, model_id, snapshot_at)) from nugen.model_snapshots")
    assert dupes == 0
    # the reruns were real commits, each one naming the slot, the command and the version
    commits = lake_commits_since(root, "model_snapshots", before_version)
    assert len(commits) >= 2
    for commit in commits:
        assert commit["operation"] == "WRITE"
        assert (commit["nugen.slot"], commit["nugen.command"], commit["nugen.version"]) == (slot.isoformat(), "run", __version__)
        assert commit["nugen.run_id"]
    assert len({c["nugen.run_id"] for c in commits}) == 2, "one run id per run"
    # why the README warns against a file glob: the replaced files are still on disk until vacuum
    glob = f"{root}/model_snapshots/**/*.parquet"
    ((globbed,),) = duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()
    assert globbed > len(before_lake["model_snapshots"])


def test_backfill_into_an_empty_warehouse_reproduces_the_views(world, request, tmp_path: Path) -> None:
    config, state, root = world["config"], world["state"], world["root"]
    fresh = make_config(
        root, world["server"].base_url, state, warehouse_url=fresh_warehouse_url(request, world["config"].warehouse.engine, tmp_path)
    )
    before_lake, before_version = lake_dump(root), lake_version(root, "model_snapshots")
    requests = state.request_count()
    summary = backfill(fresh, first=date(2026, 3, 1), last=date(2026, 3, 2))
    assert state.request_count() == requests, "backfill must never call the API"
    assert summary.exit_code == 0 and len(summary.runs) == len(SLOTS) * (len(state.account_ids) + 1)
    assert views(fresh) == views(config)
    with open_configured_warehouse(fresh) as wh:  # and the rollups are exact, not merely repeatable
        install_reference(wh)
        assert_views_equal_reference(wh, "after the backfill")
    # the lake is rewritten to the same rows, one commit per table and day
    assert lake_dump(root) == before_lake
    days = sorted({s.date() for s in SLOTS})
    commits = lake_commits_since(root, "model_snapshots", before_version)
    assert [c["nugen.slots"] for c in commits] == [
        f"{min(s for s in SLOTS if s.date() == d).isoformat()}..{max(s for s in SLOTS if s.date() == d).isoformat()}" for d in days
    ]
    assert {c["nugen.command"] for c in commits} == {"backfill"}
