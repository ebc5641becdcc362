"""The Airflow DAGs, for real: DagBag, parse cost, and ``dag.test()`` end to end against the simulator.

Airflow runs in child processes (tests/airflow_harness.py) with a SQLite metadata DB in a temp
AIRFLOW_HOME; the simulator runs here, so its request counts are read directly. Connections and the
accounts Variable are given as AIRFLOW_CONN_* / AIRFLOW_VAR_* environment variables.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from nugen_etl.airflow.quality import check_slot
from nugen_etl.airflow.runs import run_slot
from nugen_etl.airflow.settings import DagSettings
from nugen_etl.airflow.sources import build_config
from nugen_etl.config import parse_config
from nugen_etl.pipeline import run_snapshot
from nugen_etl.records import RawAnswer
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.sinks.archive import write_raw_answer
from nugen_etl.slots import floor_slot
from nugen_etl.warehouse import open_warehouse

from .airflow_helpers import (
    DAGS,
    REPO,
    AirflowProcess,
    base_env,
    conn_env_name,
    http_connection,
    init_airflow_home,
    postgres_connection,
)
from .programs import program
from .test_pending_loads import read_only_reader
from .test_warehouse_reconnect import connections_refused

pytest.importorskip("airflow.sdk", reason="the DAG tests need apache-airflow (pip install -e '.[test]')")

DAG_ID = "nugen_aligned_models"
REBUILD_ID = "nugen_aligned_models_rebuild"
MAINTENANCE_ID = "nugen_lake_maintenance"
HOUR = timedelta(hours=1)
REJECTED = "acct-bad"
ACCOUNTS = ["acct-0001", "acct-0002", "acct-0003", REJECTED, "acct-0004"]  # batches of 2: the bad key
FLAKY = "acct-0002"  # shares a batch with 0003
MAX_ATTEMPTS = 2
TABLES = {
    "model_snapshots": "account_id, model_id, snapshot_at",
    "model_metrics": "account_id, model_id, snapshot_at, metric",
    "evaluations": "account_id, evaluation_id",
    "account_runs": "account_id, snapshot_at",
}


# --- the DAG files themselves -----------------------------------------------------------------


def describe_dags(tmp_path: Path, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, program("describe_dags")],
        env={**base_env(tmp_path / "home"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("DESCRIBE ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(line[len("DESCRIBE ") :])


def test_dagbag_has_no_import_errors_and_the_expected_tasks(tmp_path: Path) -> None:
    # No Variable, Connection, config file or metadata DB exists here: parsing must not need them.
    got = describe_dags(tmp_path)
    assert got["errors"] == {}
    snap, rebuild = got["dags"][DAG_ID], got["dags"][REBUILD_ID]
    assert set(snap["tasks"]) == {"plan", "snapshot_batch", "publish", "verdict"}
    assert snap["timetable"] == "CronDataIntervalTimetable" and snap["summary"] == "0 * * * *"
    assert (snap["catchup"], snap["max_active_runs"]) == (False, 1)
    batch = snap["tasks"]["snapshot_batch"]
    assert batch["retries"] == 3 and batch["backoff"] and batch["pool"] == "nugen_api"
    assert snap["tasks"]["plan"]["retries"] == 3
    assert snap["tasks"]["publish"]["outlets"] == ["nugen_model_metrics", "nugen_model_snapshots"]
    assert snap["tasks"]["publish"]["trigger_rule"] == "all_done_min_one_success"
    assert snap["tasks"]["verdict"]["trigger_rule"] == "one_failed"
    assert set(rebuild["tasks"]) == {"rebuild"} and rebuild["tasks"]["rebuild"]["retries"] == 1
    assert rebuild["params"] == ["accounts", "from", "to"]
    maintenance = got["dags"][MAINTENANCE_ID]
    assert set(maintenance["tasks"]) == {"compact_lake"} and maintenance["max_active_runs"] == 1
    assert maintenance["timetable"] == "CronTriggerTimetable" and maintenance["summary"] == "30 3 * * *"


def test_schedule_catchup_and_retries_come_from_the_environment(tmp_path: Path) -> None:
    got = describe_dags(tmp_path, NUGEN_SCHEDULE="*/15 * * * *", NUGEN_CATCHUP="true", NUGEN_TASK_RETRIES="5")
    snap = got["dags"][DAG_ID]
    assert snap["summary"] == "*/15 * * * *" and snap["catchup"] is True
    assert snap["tasks"]["snapshot_batch"]["retries"] == 5


@pytest.mark.parametrize("dag_file", ["nugen_aligned_models.py", "nugen_aligned_models_rebuild.py", "nugen_lake_maintenance.py"])
def test_a_dag_file_parses_without_the_pipelines_libraries(tmp_path: Path, dag_file: str) -> None:
    """Parsing a DAG file loads none of the heavy modules (their parse cost is measured by `make bench`,
    scenario 6, against its 100 ms target; tests do not time)."""
    done = subprocess.run(
        [sys.executable, program("dag_parse_cost"), str(DAGS / dag_file)],
        env=base_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["heavy"] == []


def test_core_package_imports_and_runs_without_airflow() -> None:
    done = subprocess.run([sys.executable, program("import_without_airflow")], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split("IMPORTED ")[1]) > 15


def test_airflow_extra_brings_airflow_3() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.replace(" ", "").startswith("apache-airflow>=3") for r in extras["airflow"])


# --- task-side library, without Airflow running --------------------------------------------------


def conn(**kw):
    return SimpleNamespace(
        **{"conn_type": "http", "host": None, "schema": None, "login": None, "password": None, "port": None, "extra_dejson": {}, **kw}
    )


def test_build_config_reads_accounts_keys_and_warehouse_from_variable_and_connections(tmp_path: Path) -> None:
    conns = {
        "nugen_acct_0001": conn(host="http://sim:8080", password="k1"),  # shell-safe spelling
        "nugen_x.y": conn(password="k2"),  # exact spelling
        "nugen_default": conn(host="eu.api.nugen.in", conn_type="https", password="kd"),
        "nugen_warehouse": conn(
            conn_type="postgres", host="db", port=5433, login="etl", password="pw", schema="wh", extra_dejson={"sslmode": "require"}
        ),
    }
    variables = {"nugen_accounts": json.dumps(["acct-0001", "x.y", "z"])}
    config = build_config(DagSettings(storage_root=str(tmp_path)), get_variable=variables.get, get_connection=conns.get, environ={})
    keys = {a.id: (a.api_key.reveal(), a.base_url) for a in config.accounts}
    assert keys == {"acct-0001": ("k1", "http://sim:8080"), "x.y": ("k2", None), "z": ("kd", "https://eu.api.nugen.in")}
    assert config.warehouse.url == "postgresql://etl@db:5433/wh?sslmode=require"
    assert config.warehouse.password.reveal() == "pw" and "pw" not in repr(config)
    assert config.storage_root == tmp_path


def test_build_config_falls_back_to_the_toml_file_and_duckdb(tmp_path: Path) -> None:
    toml = tmp_path / "nugen.toml"
    toml.write_text('[storage]\nroot = "data"\n[[accounts]]\nid = "acme"\napi_key_env = "ACME_KEY"\n')
    config = build_config(
        DagSettings(config_path=toml), get_variable=lambda k: None, get_connection=lambda c: None, environ={"ACME_KEY": "from-env"}
    )
    assert [(a.id, a.api_key.reveal()) for a in config.accounts] == [("acme", "from-env")]
    assert config.storage_root == tmp_path / "data"
    assert config.warehouse.url == f"duckdb:///{tmp_path / 'data' / 'warehouse.duckdb'}"


def test_a_run_without_data_interval_gets_a_deterministic_slot() -> None:
    queued = datetime(2026, 3, 1, 10, 47, 12, tzinfo=UTC)
    context = {"data_interval_end": None, "logical_date": None, "dag_run": SimpleNamespace(run_after=queued)}
    assert run_slot(context, HOUR) == run_slot(context, HOUR) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert run_slot({"data_interval_end": queued}, timedelta(minutes=15)) == datetime(2026, 3, 1, 10, 45, tzinfo=UTC)


# --- dag.test() end to end --------------------------------------------------------------------------


def dump(url: str) -> dict[str, list[tuple]]:
    with open_warehouse(url) as wh:
        return {t: wh.fetch_all(f"select * from nugen.{t} order by {pk}") for t, pk in TABLES.items()}


def runs_of(url: str, slot: datetime) -> dict[str, tuple]:
    with open_warehouse(url) as wh:
        rows = wh.fetch_all("select account_id, outcome, model_count, attempts from nugen.account_runs where snapshot_at = ?", [slot])
    return {a: (o, n, att) for a, o, n, att in rows}


def rows_of(url: str, slot: datetime) -> dict[str, int]:
    with open_warehouse(url) as wh:
        rows = wh.fetch_all("select account_id, count(*) from nugen.model_snapshots where snapshot_at = ? group by account_id", [slot])
    return {a: n for a, n in rows}


def data_versions(root: Path) -> dict[str, int]:
    """The Delta version of each model table: a commit of any kind advances it."""
    from deltalake import DeltaTable

    return {name: DeltaTable(str(root / name)).version() for name in ("model_snapshots", "model_metrics")}


def lake_rows(root: Path, table: str, slot: datetime) -> dict[str, int]:
    """Rows per account of one slot in a Delta table of the lake."""
    import pyarrow.dataset as pads
    from deltalake import DeltaTable

    rows = (
        DeltaTable(str(root / table))
        .to_pyarrow_dataset()
        .to_table(filter=pads.field("snapshot_at") == slot, columns=["account_id"])["account_id"]
        .to_pylist()
    )
    return {a: rows.count(a) for a in sorted(set(rows))}


def lake_history(root: Path, table: str) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(str(root / table)).history()


def counts(state: SimulatorState) -> dict[str | None, int]:
    return {a: state.request_count(a) for a in [*state.account_ids, None]}


def bad_answer(slot: datetime) -> RawAnswer:
    """An archived answer whose values break the data-quality rules (accuracy 1.5, usage -3)."""
    body = {
        "domain_aligned_models": [
            {
                "id": "aligned-model-dq",
                "alignment_id": "alignment-dq",
                "name": "dq",
                "usage_count": -3,
                "performance_metrics": {"accuracy": 1.5},
            }
        ]
    }
    return RawAnswer(
        account_id="acct-0001",
        snapshot_at=slot,
        fetched_at=slot + timedelta(minutes=1),
        http_status=200,
        body=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )


@contextmanager
def warehouse_unavailable(request: pytest.FixtureRequest, url: str) -> Iterator[None]:
    if url.startswith("duckdb:///"):
        with read_only_reader(url.removeprefix("duckdb:///")):
            yield
        return
    database = url.rsplit("/", 1)[1].split("?")[0]
    with connections_refused(request.getfixturevalue("pg_admin_url"), database):
        yield


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One Airflow process, one simulator, one storage root; every dag.test() run of the scenario, in order."""
    base = tmp_path_factory.mktemp("dags")
    root = base / "data"
    env = init_airflow_home(base / "airflow")
    state = SimulatorState(seed=5, accounts=4, models=3)
    toml = base / "nugen.toml"
    toml.write_text(f"[api]\nmax_attempts = {MAX_ATTEMPTS}\nretry_base_delay_s = 0.01\ntimeout_s = 5\n[storage]\nfsync = false\n")
    import os

    if os.environ.get("NUGEN_TEST_PG_URL"):
        new_db = request.getfixturevalue("new_pg_database")
        warehouse, rebuilt = new_db(), new_db()
        warehouse_env = {conn_env_name("nugen_warehouse"): postgres_connection(warehouse)}
        rebuilt_env = {conn_env_name("nugen_warehouse"): postgres_connection(rebuilt)}
    else:
        warehouse = f"duckdb:///{root / 'warehouse.duckdb'}"  # the default: no nugen_warehouse Connection
        rebuilt = f"duckdb:///{base / 'rebuilt.duckdb'}"
        toml2 = base / "rebuilt.toml"
        toml2.write_text(toml.read_text() + f'[warehouse]\nurl = "{rebuilt}"\n')
        warehouse_env, rebuilt_env = {}, {"NUGEN_ETL_CONFIG": str(toml2)}
    out: dict = {"root": root, "state": state, "warehouse": warehouse, "rebuilt": rebuilt}
    with serve(state) as server:
        env.update(
            {
                "AIRFLOW_VAR_NUGEN_ACCOUNTS": json.dumps(ACCOUNTS),
                "NUGEN_ETL_CONFIG": str(toml),
                "NUGEN_STORAGE_ROOT": str(root),
                "NUGEN_BATCH_SIZE": "2",
                "NUGEN_TASK_RETRIES": "1",
                "NUGEN_RETRY_DELAY_S": "1",
                **warehouse_env,
            }
        )
        for account_id in state.account_ids:  # shell-safe ids: AIRFLOW_CONN_NUGEN_ACCT_0001
            env[conn_env_name("nugen_" + account_id.replace("-", "_"))] = http_connection(server.base_url, state.api_key(account_id))
        env[conn_env_name("nugen_default")] = http_connection(server.base_url, "sk-sim-rejected-key")
        proc = AirflowProcess(env, base / "airflow.log")
        out["log"] = proc.log_path
        try:
            now = datetime.now(UTC)
            slot = floor_slot(now, HOUR)
            out["slot"] = slot
            # 1. live, the flaky account's first try answers 503 on every attempt
            state.inject(FLAKY, [Fault.status(503)] * MAX_ATTEMPTS)
            (out["live"],) = proc.run([{"dag_id": DAG_ID, "logical_date": now}])
            out["live_counts"], out["live_dump"], out["live_files"] = counts(state), dump(warehouse), data_versions(root)
            # 2. the same interval again
            (out["again"],) = proc.run([{"dag_id": DAG_ID, "logical_date": now}])
            out["again_counts"], out["again_dump"], out["again_files"] = counts(state), dump(warehouse), data_versions(root)
            # 3. a past interval whose answers are in the raw archive (captured earlier, elsewhere)
            past = slot - 5 * HOUR
            scratch = base / "scratch"
            accounts = [{"id": a, "api_key_env": f"K{n}"} for n, a in enumerate(ACCOUNTS)]
            keys = {f"K{n}": state.api_key(a) if a != REJECTED else "nope" for n, a in enumerate(ACCOUNTS)}
            capture = parse_config(
                {"api": {"base_url": server.base_url}, "storage": {"root": str(scratch), "fsync": False}, "accounts": accounts},
                base_dir=scratch,
                environ=keys,
            )
            state.set_time(past + timedelta(minutes=2))
            out["captured"] = run_snapshot(capture, snapshot_at=past)
            state.set_time(None)
            shutil.copytree(scratch / "raw", root / "raw", dirs_exist_ok=True)
            state.reset_counts()
            (out["past"],) = proc.run([{"dag_id": DAG_ID, "logical_date": past}])
            out["past_requests"] = state.request_count()
            # 4. a past interval nobody archived
            unobserved = slot - 9 * HOUR
            (out["unobserved"],) = proc.run([{"dag_id": DAG_ID, "logical_date": unobserved}])
            out["unobserved_requests"] = state.request_count()
            # 5. a past interval whose archived answer breaks the data-quality rules
            dq_slot = slot - 3 * HOUR
            write_raw_answer(root, bad_answer(dq_slot), fsync=False)
            (out["dq"],) = proc.run([{"dag_id": DAG_ID, "logical_date": dq_slot}])
            out["dq_requests"] = state.request_count()
            # 6. a manual run without a logical date (so without a data interval)
            before = floor_slot(datetime.now(UTC), HOUR)
            (out["manual"],) = proc.run([{"dag_id": DAG_ID, "logical_date": None}])
            out["manual_slots"] = {before, floor_slot(datetime.now(UTC), HOUR)}
            out["manual_counts"] = counts(state)
            # 7. rebuild everything from the raw archive into an empty warehouse
            out["final_dump"] = dump(warehouse)
            days = {"from": str((slot - 9 * HOUR).date()), "to": str(datetime.now(UTC).date())}
            (out["rebuild"],) = proc.run([{"dag_id": REBUILD_ID, "logical_date": None, "conf": days}], env=rebuilt_env)
            out["rebuild_requests"] = state.request_count()
            out["rebuilt_dump"] = dump(rebuilt)
            # 8. a closed day in the lake (two days back, written outside Airflow), then the daily maintenance
            closed = slot - 48 * HOUR
            state.set_time(closed + timedelta(minutes=2))
            lake_config = parse_config(
                {
                    "api": {"base_url": server.base_url},
                    "storage": {"root": str(root), "fsync": False},
                    "warehouse": {"url": f"duckdb:///{base / 'side.duckdb'}"},
                    "accounts": accounts,
                },
                base_dir=base,
                environ=keys,
            )
            out["closed_run"] = run_snapshot(lake_config, snapshot_at=closed)
            state.set_time(None)
            out["closed"] = closed
            (out["maintenance"],) = proc.run([{"dag_id": MAINTENANCE_ID, "logical_date": None}])
            # 9. the warehouse unavailable during a live run of the previous hour (a reader holding the DuckDB
            # file in another process, or PostgreSQL refusing connections), then back; the next run (the
            # current interval again) loads the held slot from the raw archive
            held = slot - HOUR
            out["held_slot"], before = held, counts(state)
            back = {**warehouse_env, "NUGEN_ETL_CONFIG": str(toml)}  # step 7 pointed the tasks at `rebuilt`
            with warehouse_unavailable(request, warehouse):
                (out["held"],) = proc.run([{"dag_id": DAG_ID, "logical_date": held}], env=back)
            out["held_requests"] = {a: n - before[a] for a, n in counts(state).items()}
            out["held_rows_before"] = rows_of(warehouse, held)
            before = counts(state)
            (out["caught"],) = proc.run([{"dag_id": DAG_ID, "logical_date": datetime.now(UTC)}])
            out["caught_requests"] = {a: n - before[a] for a, n in counts(state).items()}
            out["held_rows_after"], out["held_runs_after"] = rows_of(warehouse, held), runs_of(warehouse, held)
        finally:
            proc.close()
        yield SimpleNamespace(**out)


def why(world) -> str:
    return "\n--- airflow log (tail) ---\n" + world.log.read_text(errors="replace")[-6000:]


def test_live_run_writes_lake_and_warehouse_rows_for_the_slot(world) -> None:
    state, slot = world.state, world.slot
    assert world.live.data_interval_end == slot.isoformat(), why(world)
    expected = {a: len(state.models_at(a, datetime.now(UTC))) for a in state.account_ids if a != state.empty_account_id}
    assert rows_of(world.warehouse, slot) == expected, why(world)
    runs = runs_of(world.warehouse, slot)
    assert {a: o for a, (o, _, _) in runs.items()} == {
        "acct-0001": "ok",
        "acct-0002": "ok",
        "acct-0003": "ok",
        "acct-0004": "empty",
        REJECTED: "auth_failed",
    }
    assert lake_rows(world.root, "model_snapshots", slot) == expected, why(world)
    assert set(lake_rows(world.root, "model_metrics", slot)) == set(expected)
    assert lake_rows(world.root, "account_runs", slot) == dict.fromkeys(runs, 1)


def test_lake_commits_name_the_airflow_run_the_slot_and_the_version(world) -> None:
    from nugen_etl import __version__

    live = [
        c
        for c in lake_history(world.root, "model_snapshots")
        if c.get("nugen.slot") == world.slot.isoformat() and c.get("nugen.command") == "run"
    ]
    assert live, why(world)
    assert all(c["nugen.run_id"].startswith("airflow:") and c["nugen.version"] == __version__ for c in live)
    rebuilt = [c for c in lake_history(world.root, "model_snapshots") if c.get("nugen.command") == "backfill"]
    assert rebuilt and all(c["nugen.run_id"].startswith("airflow:") for c in rebuilt)


def test_publish_emits_one_asset_event_per_dataset(world) -> None:
    events = dict(world.live.asset_events)
    assert set(events) == {"nugen_model_snapshots", "nugen_model_metrics"}, why(world)
    extra = events["nugen_model_snapshots"]
    assert extra["snapshot_at"] == world.slot.isoformat() and extra["dataset"] == "nugen_model_snapshots"
    assert extra["outcomes"] == {"auth_failed": 1, "empty": 1, "ok": 3}
    assert extra["rows"]["model_snapshots"] == sum(rows_of(world.warehouse, world.slot).values())
    assert world.dq.asset_events == [], "a slot that fails its data-quality checks is not announced"
    # publish leaves the latest HTML report under the storage root and names it in the event
    assert extra["report"] == "reports/latest.html"
    page = (world.root / "reports" / "latest.html").read_text(encoding="utf-8")
    assert "Aligned models: usage and accuracy" in page and "acct-0001" in page


def test_a_rejected_key_fails_only_its_own_batch(world) -> None:
    live = world.live
    assert live.state == "failed", why(world)
    assert live.states("plan") == ["success"]
    # batches: [0001, 0002] (0002 flaky, retried), [0003, acct-bad], [0004]
    assert live.states("snapshot_batch") == ["success", "failed", "success"], why(world)
    assert live.tries("snapshot_batch")[1] == 1, "a rejected key is not retried"
    assert live.states("publish") == ["success"] and live.states("verdict") == ["failed"]
    assert runs_of(world.warehouse, world.slot)["acct-0003"][0] == "ok"  # its batch-mate is written


def test_a_retry_refetches_only_the_accounts_that_failed(world) -> None:
    assert world.live.tries("snapshot_batch")[0] == 2, why(world)
    got = world.live_counts
    assert got["acct-0001"] == 1, "acct-0001 succeeded in the first try and must not be fetched again"
    assert got[FLAKY] == MAX_ATTEMPTS + 1
    assert runs_of(world.warehouse, world.slot)[FLAKY][0] == "ok"


def test_a_second_run_of_the_same_interval_changes_nothing(world) -> None:
    assert world.again.data_interval_end == world.live.data_interval_end
    before, after = world.live_counts, world.again_counts
    assert {a: after[a] - before[a] for a in world.state.account_ids} == dict.fromkeys(world.state.account_ids, 0)
    assert after[None] == before[None] + 1  # only the rejected key is tried again
    strip = lambda d: {**d, "account_runs": [r for r in d["account_runs"] if r[0] != REJECTED]}  # noqa: E731
    assert strip(world.again_dump) == strip(world.live_dump)
    assert world.again_files == world.live_files  # not even rewritten: no new commit to the model tables


def test_a_past_interval_with_raw_data_replays_it_without_api_calls(world) -> None:
    past = world.slot - 5 * HOUR
    assert world.past.state == "success", why(world)
    assert world.past.data_interval_end == past.isoformat()
    assert world.past_requests == 0
    captured = {r.account_id: (str(r.outcome), r.model_count) for r in world.captured.runs}
    assert {a: (o, n) for a, (o, n, _) in runs_of(world.warehouse, past).items()} == captured
    assert rows_of(world.warehouse, past) == {a: n for a, (o, n) in captured.items() if n}
    assert lake_rows(world.root, "model_snapshots", past) == rows_of(world.warehouse, past)


def test_a_past_interval_without_raw_data_records_not_observed_without_api_calls(world) -> None:
    slot = world.slot - 9 * HOUR
    assert world.unobserved.state == "success", why(world)
    assert world.unobserved_requests == 0
    assert {a: o for a, (o, _, _) in runs_of(world.warehouse, slot).items()} == dict.fromkeys(ACCOUNTS, "not_observed")
    assert rows_of(world.warehouse, slot) == {}


def test_data_quality_problems_fail_publish_loudly(world) -> None:
    dq = world.dq
    assert world.dq_requests == 0
    assert dq.states("snapshot_batch") == ["success"] * 3, why(world)
    assert dq.states("publish") == ["failed"] and dq.state == "failed"
    with open_warehouse(world.warehouse) as wh:
        problems = {p.check for p in check_slot(wh, world.slot - 3 * HOUR)}
    assert problems == {"accuracy_in_unit_interval", "usage_not_negative"}
    log = world.log.read_text(errors="replace")
    assert "accuracy_in_unit_interval" in log and "usage_not_negative" in log


def test_a_manual_run_without_data_interval_snapshots_the_current_slot(world) -> None:
    manual = world.manual
    assert manual.data_interval_end is None
    assert manual.states("plan") == ["success"] and manual.states("publish") == ["success"], why(world)
    with open_warehouse(world.warehouse) as wh:
        slots = {
            r[0]
            for r in wh.fetch_all("select distinct snapshot_at from nugen.account_runs where account_id = 'acct-0001' and outcome = 'ok'")
        }
    assert slots & world.manual_slots, "the manual run's slot is the current one, floored"


def test_the_rebuild_dag_reproduces_the_warehouse_from_the_raw_archive(world) -> None:
    assert world.rebuild.state == "success", why(world)
    assert world.rebuild_requests == world.manual_counts[None] + sum(world.manual_counts[a] for a in world.state.account_ids), (
        "rebuild must not call the API"
    )
    final, rebuilt = world.final_dump, world.rebuilt_dump
    observed = [r for r in final["account_runs"] if r[2] != "not_observed"]  # (account, slot, outcome, ...)
    assert rebuilt["account_runs"] == observed
    for table in ("model_snapshots", "model_metrics", "evaluations"):
        assert rebuilt[table] == final[table], table
    assert len(rebuilt["model_snapshots"]) > 0


def test_the_maintenance_dag_compacts_closed_days_to_few_files(world) -> None:
    from nugen_etl.sinks.compaction import load_state
    from nugen_etl.sinks.lake import LAKE_TABLES
    from nugen_etl.storage import LocalStorage

    assert world.maintenance.state == "success", why(world)
    assert lake_rows(world.root, "model_snapshots", world.closed), "the closed day has rows to compact"
    state = load_state(LocalStorage(world.root))
    day = world.closed.date().isoformat()
    from deltalake import DeltaTable

    for spec in LAKE_TABLES:
        actions = pa_table(DeltaTable(str(world.root / spec.name)).get_add_actions(flatten=True))
        on_day = [
            p for p, d in zip(actions["path"].to_pylist(), actions["partition.snapshot_date"].to_pylist(), strict=False) if str(d) == day
        ]
        assert 1 <= len(on_day) <= 2, (spec.name, on_day)
        assert sorted(on_day) == state[spec.name][day]
    history = lake_history(world.root, "model_snapshots")
    assert any(
        c.get("nugen.command") == "compact" and c.get("nugen.day") == day and c["nugen.run_id"].startswith("airflow:") for c in history
    )


def pa_table(data):
    import pyarrow as pa

    return pa.table(data)


def test_a_run_whose_warehouse_is_unavailable_archives_and_the_next_run_catches_up(world) -> None:
    """The held run calls the API once per account (its retry calls it for none), fails its batches with
    the loads pending, and writes nothing to the warehouse; the next run loads the held slot from the
    raw archive with no API call for it."""
    held = world.held
    assert held.states("snapshot_batch") == ["failed", "failed", "failed"], why(world)
    real = [a for a in world.state.account_ids]
    assert {a: world.held_requests[a] for a in real} == dict.fromkeys(real, 1), why(world)
    assert world.held_rows_before == {}
    assert {a: n for a, n in world.caught_requests.items() if a is not None} == dict.fromkeys(real, 0)
    expected = {a: len(world.state.models_at(a, datetime.now(UTC))) for a in real if a != world.state.empty_account_id}
    assert world.held_rows_after == expected, why(world)
    assert {a: o for a, (o, _, _) in world.held_runs_after.items()} == {
        "acct-0001": "ok",
        "acct-0002": "ok",
        "acct-0003": "ok",
        "acct-0004": "empty",
        REJECTED: "auth_failed",
    }
