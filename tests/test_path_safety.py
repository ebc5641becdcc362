"""Config and path safety: hostile account ids stop at config load (exit 2, nothing written), no key
can leave the storage root, nothing in an answer becomes a path (the lake's data files are named by
delta-rs under ``snapshot_date=`` partitions only), and a model's ``endpoint`` is never requested
(the simulator's request log shows only the API path)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable

from nugen_etl.cli import main
from nugen_etl.config import parse_config
from nugen_etl.errors import ConfigError
from nugen_etl.pipeline import run_snapshot
from nugen_etl.records import RawAnswer
from nugen_etl.simulator import API_PATH, Fault, SimulatorState, serve
from nugen_etl.sinks.archive import list_archived_slots, raw_answer_key
from nugen_etl.sinks.lake import Lake, LakeLocation
from nugen_etl.storage import LocalStorage
from nugen_etl.transform import answer_to_load

from .e2e_helpers import FETCH_OFFSET, T0, environ_for, key_env

SLOT = T0 + timedelta(hours=1)
LAKE_TABLES = ("model_snapshots", "model_metrics", "account_runs")
# What delta-rs names the files of a table: data files under the day partition, commits in the log.
DATA_FILE = re.compile(r"snapshot_date=\d{4}-\d{2}-\d{2}/part-\d{5}-[0-9a-f-]{36}-c\d{3}(\.zstd)?\.parquet")
LOG_FILE = re.compile(r"_delta_log/\d{20}\.json")
HOSTILE_IDS = [
    "../evil",
    "..",
    "a/b",
    "/abs",
    "a\\b",
    "with space",
    "tab\there",
    "new\nline",
    "ünïcode",
    "ＡＣＭＥ",
    "é",
    ".hidden",
    "-lead",
    "",
    "x" * 65,
    "nul\u0000",
]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS, ids=repr)
def test_hostile_account_id_is_refused_at_load_and_nothing_is_written(bad_id: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("K", "sk-x")
    config = tmp_path / "nugen.toml"
    config.write_text(f'[storage]\nroot = "data"\n\n[[accounts]]\nid = {json.dumps(bad_id)}\napi_key_env = "K"\n', encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "accounts[1].id: invalid account id" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nugen.toml"], "nothing may be created"


@pytest.mark.parametrize("command", [["run"], ["backfill", "--from", "2026-03-01", "--to", "2026-03-01"]])
def test_hostile_account_on_the_command_line_is_refused(command: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("K", "sk-x")
    config = tmp_path / "nugen.toml"
    config.write_text('[storage]\nroot = "data"\n\n[[accounts]]\nid = "acme"\napi_key_env = "K"\n')
    assert main([*command, "--config", str(config), "--account", "../acme"]) == 2
    assert "not in the configuration: ../acme" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("bad_id", ["../evil", "a/b", ".."])
def test_keys_are_built_only_from_valid_ids(bad_id: str) -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    raw = RawAnswer(account_id=bad_id, snapshot_at=when, fetched_at=when, http_status=200, body=b"{}")
    with pytest.raises(ConfigError):
        raw_answer_key(raw)


def assert_lake_files_named_by_delta(table: Path) -> list[str]:
    """Every file of a lake table is a delta-rs data file of a day partition or a commit; returns them."""
    files = sorted(p.relative_to(table).as_posix() for p in table.rglob("*") if p.is_file())
    for name in files:
        assert DATA_FILE.fullmatch(name) or LOG_FILE.fullmatch(name), name
    return files


def test_lake_paths_come_from_the_slot_day_only(tmp_path: Path) -> None:
    """Account and model ids are column values, never folders: even ids a configuration would refuse
    (the lake's replace-where predicate quotes them) land in ``snapshot_date=`` files, and a second
    write of the same slot replaces exactly those rows."""
    when = datetime(2026, 3, 1, 5, tzinfo=UTC)
    ids = ["../evil", "a/b", "..", "o'brien", "x' OR '1'='1"]
    body = json.dumps({"domain_aligned_models": [{"id": "../../../outside", "name": "/etc/passwd", "usage_count": 1}]}).encode()
    loads = [answer_to_load(RawAnswer(account_id=a, snapshot_at=when, fetched_at=when, http_status=200, body=body)) for a in ids]
    root = tmp_path / "root"
    with Lake(LakeLocation(str(root))) as lake:
        lake.write(loads)
        lake.write(loads[:1])  # a rerun of one of them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert sorted(p.name for p in root.iterdir()) == sorted(LAKE_TABLES)
    for name in LAKE_TABLES:  # (no metrics: the models carry no numbers)
        files = assert_lake_files_named_by_delta(root / name)
        folders = {f.split("/")[0] for f in files if not f.startswith("_delta_log")}
        assert folders == (set() if name == "model_metrics" else {"snapshot_date=2026-03-01"}), name
    rows = DeltaTable(str(root / "model_snapshots")).to_pyarrow_table().sort_by("account_id")
    assert rows["account_id"].to_pylist() == sorted(ids)
    assert set(rows["model_id"].to_pylist()) == {"../../../outside"}


@pytest.mark.parametrize("key", ["../outside", "raw/../../outside", "/etc/passwd", "raw//x", "raw/./x", "a\\..\\b"])
def test_storage_keys_cannot_leave_the_root(key: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root", fsync=False)
    with pytest.raises(ValueError, match="unsafe storage key"):
        storage.write_bytes_atomic(key, b"x")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "root").exists()


def test_planted_folders_in_the_archive_are_not_replayed(tmp_path: Path) -> None:
    for name in ("account_id=..", "account_id=.hidden", "account_id=a b", "not-an-account"):
        (tmp_path / "raw" / name / "snapshot_date=2026-03-01").mkdir(parents=True)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert list(list_archived_slots(tmp_path, start=start, end=start + timedelta(days=1))) == []


def test_answers_never_become_paths_or_urls(tmp_path: Path, monkeypatch) -> None:
    """Model ids and endpoints full of paths and URLs (one pointing at the simulator itself):
    every file lands under the root by account and slot, and only the API path is ever requested."""
    monkeypatch.chdir(tmp_path)
    state = SimulatorState(seed=61, accounts=3, models=5, start=T0)
    with serve(state) as server:
        lure = f"{server.base_url}/api/v3/inference/completions/steal"
        models = [
            {
                "id": mid,
                "name": "/etc/passwd",
                "endpoint": endpoint,
                "usage_count": 1,
                "alignment_project": "../../..",
                "evaluation_data": {"evaluation_id": "../../e"},
            }
            for mid, endpoint in [
                ("../../../../outside", lure),
                ("/abs/path", f"{server.base_url}/x?y=1"),
                ("a\\..\\b", "file:///etc/passwd"),
                ("m", "http://169.254.169.254/"),
            ]
        ]
        state.inject("acct-0001", [Fault.body(json.dumps({"domain_aligned_models": models}).encode())])
        root = tmp_path / "root"
        config = parse_config(
            {
                "api": {"base_url": server.base_url, "max_attempts": 1, "timeout_s": 5},
                "storage": {"root": str(root), "fsync": False},
                "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
                "accounts": [{"id": a, "api_key_env": key_env(a)} for a in state.account_ids],
            },
            base_dir=tmp_path,
            environ=environ_for(state),
        )
        state.set_time(SLOT + FETCH_OFFSET)
        state.reset_counts()
        summary = run_snapshot(config, snapshot_at=SLOT)  # the simulator's own deployed models have endpoints too
    assert summary.exit_code == 0
    assert state.request_paths() == [API_PATH] * len(state.account_ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"], "nothing outside the storage root"
    top = {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()}
    assert top == {"raw", *LAKE_TABLES, "warehouse.duckdb"}
    for name in LAKE_TABLES:
        files = assert_lake_files_named_by_delta(root / name)
        assert {f.split("/")[0] for f in files if not f.startswith("_delta_log")} == {f"snapshot_date={SLOT.date()}"}
    for path in (root / "raw").rglob("*"):  # the raw archive's folders are the configured ids and the day
        if path.is_dir():
            assert path.name.removeprefix("account_id=") in state.account_ids or path.name == (f"snapshot_date={SLOT.date()}")
    stored = DeltaTable(str(root / "model_snapshots")).to_pyarrow_table().to_pylist()
    assert {r["model_id"] for r in stored if r["account_id"] == "acct-0001"} == {m["id"] for m in models}
