"""The command line as other tooling calls it: exit codes, --at rules, --json, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from nugen_etl.cli import main, resolve_slot
from nugen_etl.config import load_config
from nugen_etl.errors import ConfigError
from nugen_etl.report import lake_example_command
from nugen_etl.simulator import SimulatorState, serve
from nugen_etl.slots import floor_slot
from nugen_etl.warehouse import open_warehouse

from .e2e_helpers import REJECTED, environ_for, key_env, write_toml_config


@pytest.fixture
def sim():
    state = SimulatorState(seed=3, accounts=3, models=3)
    with serve(state, host="127.0.0.1", port=0) as server:
        yield state, server


def write_config(tmp_path: Path, base_url: str, accounts: list[str]) -> Path:
    return write_toml_config(tmp_path, base_url, accounts, api={"max_attempts": 1})


def set_keys(monkeypatch: pytest.MonkeyPatch, state: SimulatorState) -> dict[str, str]:
    env = environ_for(state)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_run_all_ok_exits_0_and_json_summary_has_no_keys(sim, tmp_path, monkeypatch, capsys) -> None:
    state, server = sim
    env = set_keys(monkeypatch, state)
    config = write_config(tmp_path, server.base_url, state.account_ids)
    before = floor_slot(datetime.now(UTC), timedelta(hours=1))
    assert main(["run", "--config", str(config), "--json"]) == 0
    after = floor_slot(datetime.now(UTC), timedelta(hours=1))
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["outcomes"] == {"ok": len(state.account_ids) - 1, "empty": 1}
    assert doc["snapshot_at"] in {before.isoformat(), after.isoformat()}
    assert "nugen-etl run:" in err
    for key in env.values():
        assert key not in out and key not in err
    assert (tmp_path / "data" / "warehouse.duckdb").exists()


def test_one_rejected_account_exits_1_and_the_rest_is_written(sim, tmp_path, monkeypatch, capsys) -> None:
    state, server = sim
    set_keys(monkeypatch, state)
    config = write_config(tmp_path, server.base_url, ["acct-0001", REJECTED])
    assert main(["run", "--config", str(config), "--json", "--quiet"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["outcomes"] == {"ok": 1, "auth_failed": 1} and err == ""
    data = tmp_path / "data"
    snapshots = DeltaTable(str(data / "model_snapshots")).to_pyarrow_table()
    runs = DeltaTable(str(data / "account_runs")).to_pyarrow_table()
    assert dict(zip(runs["account_id"].to_pylist(), runs["outcome"].to_pylist(), strict=False)) == {
        "acct-0001": "ok",
        REJECTED: "auth_failed",
    }
    (models,) = pc.filter(runs["model_count"], pc.equal(runs["account_id"], "acct-0001")).to_pylist()
    assert models > 0 and set(snapshots["account_id"].to_pylist()) == {"acct-0001"}
    assert snapshots.num_rows == models


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--at", "2020-01-01T00:00:00"], "backfill"),
        (["--at", "yesterday"], "not an ISO 8601"),
        (["--account", "nobody"], "not in the configuration: nobody"),
    ],
)
def test_usage_errors_exit_2_with_a_message(sim, tmp_path, monkeypatch, capsys, extra, message) -> None:
    state, server = sim
    set_keys(monkeypatch, state)
    config = write_config(tmp_path, server.base_url, ["acct-0001"])
    assert main(["run", "--config", str(config), *extra]) == 2
    assert message in capsys.readouterr().err
    assert state.request_count() == 0


def test_missing_key_variable_exits_2_naming_account(sim, tmp_path, monkeypatch, capsys) -> None:
    state, server = sim
    config = write_config(tmp_path, server.base_url, ["acct-0001"])
    monkeypatch.delenv(key_env("acct-0001"), raising=False)
    assert main(["run", "--config", str(config)]) == 2
    assert f"acct-0001 ({key_env('acct-0001')})" in capsys.readouterr().err


def test_force_slot_records_a_far_slot(sim, tmp_path, monkeypatch, capsys) -> None:
    state, server = sim
    set_keys(monkeypatch, state)
    config = write_config(tmp_path, server.base_url, ["acct-0001"])
    assert main(["run", "--config", str(config), "--at", "2020-01-01T05:30", "--force-slot", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["snapshot_at"] == "2020-01-01T05:00:00+00:00"


def test_resolve_slot_window() -> None:
    from nugen_etl.config import parse_config

    cfg = parse_config({"accounts": [{"id": "a", "api_key_env": "K"}]}, base_dir=Path("."), environ={})
    now = datetime(2026, 5, 5, 10, 40, tzinfo=UTC)
    assert resolve_slot(None, cfg, force=False, now=now) == datetime(2026, 5, 5, 10, tzinfo=UTC)
    assert resolve_slot("2026-05-05T08:00Z", cfg, force=False, now=now) == datetime(2026, 5, 5, 8, tzinfo=UTC)
    assert resolve_slot("2026-05-05T14:00+02:00", cfg, force=False, now=now) == datetime(2026, 5, 5, 12, tzinfo=UTC)
    with pytest.raises(ConfigError, match="backfill"):
        resolve_slot("2026-05-05T07:00Z", cfg, force=False, now=now)
    with pytest.raises(ConfigError):
        resolve_slot("2026-05-05T13:00Z", cfg, force=False, now=now)


def test_migrate_and_backfill_commands(sim, tmp_path, monkeypatch, capsys) -> None:
    state, server = sim
    set_keys(monkeypatch, state)
    config = write_config(tmp_path, server.base_url, ["acct-0001"])
    assert main(["migrate", "--config", str(config)]) == 0
    assert "migrations applied" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    before = state.request_count()
    today = datetime.now(UTC).date().isoformat()
    assert main(["backfill", "--config", str(config), "--from", today, "--to", today, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"] == {"ok": 1}
    assert state.request_count() == before
    assert main(["backfill", "--config", str(config), "--from", today, "--to", "2000-01-01"]) == 2


def test_migrate_rebuild_rollups_restores_the_views(sim, tmp_path, monkeypatch, capsys) -> None:
    """Rollups that drifted from the snapshots (emptied here) come back exact from `migrate --rebuild-rollups`."""
    state, server = sim
    set_keys(monkeypatch, state)
    config = write_config(tmp_path, server.base_url, ["acct-0001", "acct-0002"])
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    views = ("models_latest", "model_usage_daily", "account_health")

    def read() -> dict[str, list[tuple]]:
        with open_warehouse(load_config(config).warehouse.url) as wh:
            return {v: sorted(wh.fetch_all(f"SELECT * FROM nugen.{v}"), key=repr) for v in views}

    before = read()
    assert all(before.values())
    with open_warehouse(load_config(config).warehouse.url) as wh:
        for table in ("rollup_model_daily", "rollup_models_current", "rollup_account_health"):
            wh.fetch_all(f"DELETE FROM nugen.{table}")
    assert not any(read().values())
    capsys.readouterr()
    assert main(["migrate", "--config", str(config), "--rebuild-rollups"]) == 0
    assert "rollups rebuilt" in capsys.readouterr().out
    assert read() == before


def test_demo_runs_offline_and_reports(tmp_path, capsys) -> None:
    demo = tmp_path / "demo"
    assert main(["demo", "--dir", str(demo)]) == 0
    out = capsys.readouterr().out
    for part in (
        "Per-account outcome",
        "auth_failed",
        "empty",
        "Top models by usage growth",
        "Accuracy trend",
        "Delta tables",
        "warehouse.duckdb",
        "delta_scan(",
    ):
        assert part in out
    assert "read_parquet(" not in out, "a file glob over a Delta table also reads replaced files"
    command = lake_example_command(demo / "model_snapshots")
    assert f"Example query   : {command}\n" in out
    assert "While runs write : query the Delta tables as above (never blocks a run)" in out
    snapshots = DeltaTable(str(demo / "model_snapshots")).to_pyarrow_table()
    assert snapshots.num_rows > 5

    # the printed command, run as a user would in the project's environment (no extension downloads)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = [[cell.strip() for cell in line.strip("│").split("│")] for line in proc.stdout.splitlines() if line.startswith("│")]
    header, rows = printed[0], printed[2:]  # the second line holds the column types
    assert header == ["account_id", "model_key", "snapshot_at", "usage_count", "accuracy"]
    newest = (
        snapshots.sort_by([("snapshot_at", "descending"), ("account_id", "ascending"), ("model_key", "ascending")]).slice(0, 5).to_pylist()
    )
    assert [(r[0], r[1]) for r in rows] == [(m["account_id"], m["model_key"]) for m in newest]
    # rows of one model key in one slot (a redeploy) may come in either order
    assert sorted((r[0], r[1], int(r[3])) for r in rows) == sorted((m["account_id"], m["model_key"], m["usage_count"]) for m in newest)
