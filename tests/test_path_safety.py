"""Config and path safety: hostile account ids stop at config load (exit 2, nothing written), no key
can leave the storage root, nothing in an answer becomes a path, and a model's ``endpoint`` is
never requested (the simulator's request log shows only the API path)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nugen_etl.cli import main
from nugen_etl.config import parse_config
from nugen_etl.errors import ConfigError
from nugen_etl.parquet_sink import slot_file_key
from nugen_etl.pipeline import run_snapshot
from nugen_etl.raw_archive import list_archived_slots, raw_answer_key
from nugen_etl.records import RawAnswer
from nugen_etl.schemas import MODEL_SNAPSHOTS
from nugen_etl.simulator import API_PATH, Fault, SimulatorState, serve
from nugen_etl.storage import LocalStorage

from .e2e_helpers import FETCH_OFFSET, T0, environ_for, key_env

SLOT = T0 + timedelta(hours=1)
HOSTILE_IDS = ["../evil", "..", "a/b", "/abs", "a\\b", "with space", "tab\there", "new\nline", "ünïcode",
               "ＡＣＭＥ", "é", ".hidden", "-lead", "", "x" * 65, "nul\u0000"]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS, ids=repr)
def test_hostile_account_id_is_refused_at_load_and_nothing_is_written(bad_id: str, tmp_path: Path, capsys,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("K", "sk-x")
    config = tmp_path / "nugen.toml"
    config.write_text(f'[storage]\nroot = "data"\n\n[[accounts]]\nid = {json.dumps(bad_id)}\napi_key_env = "K"\n',
                      encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "accounts[1].id: invalid account id" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nugen.toml"], "nothing may be created"


@pytest.mark.parametrize("command", [["run"], ["backfill", "--from", "2026-03-01", "--to", "2026-03-01"]])
def test_hostile_account_on_the_command_line_is_refused(command: list[str], tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
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
    with pytest.raises(ConfigError):
        slot_file_key(MODEL_SNAPSHOTS, bad_id, when)


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
        models = [{"id": mid, "name": "/etc/passwd", "endpoint": endpoint, "usage_count": 1,
                   "alignment_project": "../../..", "evaluation_data": {"evaluation_id": "../../e"}}
                  for mid, endpoint in [("../../../../outside", lure), ("/abs/path", f"{server.base_url}/x?y=1"),
                                        ("a\\..\\b", "file:///etc/passwd"), ("m", "http://169.254.169.254/")]]
        state.inject("acct-0001", [Fault.body(json.dumps({"domain_aligned_models": models}).encode())])
        root = tmp_path / "root"
        config = parse_config({
            "api": {"base_url": server.base_url, "max_attempts": 1, "timeout_s": 5},
            "storage": {"root": str(root), "fsync": False},
            "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
            "accounts": [{"id": a, "api_key_env": key_env(a)} for a in state.account_ids],
        }, base_dir=tmp_path, environ=environ_for(state))
        state.set_time(SLOT + FETCH_OFFSET)
        state.reset_counts()
        summary = run_snapshot(config, snapshot_at=SLOT)  # the simulator's own deployed models have endpoints too
    assert summary.exit_code == 0
    assert state.request_paths() == [API_PATH] * len(state.account_ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"], "nothing outside the storage root"
    top = {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()}
    assert top <= {"raw", "model_snapshots", "model_metrics", "warehouse.duckdb"}
    for path in root.rglob("*.parquet"):
        assert path.name == "part-20260301T210000Z.parquet"
        assert path.parent.name.removeprefix("account_id=") in state.account_ids
