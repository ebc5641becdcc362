"""Configuration parsing: the contract keys, defaults, and clear errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from nugen_etl.config import DEFAULT_BASE_URL, ApiConfig, Config, WarehouseConfig, load_config
from nugen_etl.errors import ConfigError
from nugen_etl.redaction import Secret

GOOD = """
[api]
base_url = "http://127.0.0.1:9999"
timeout_s = 5
max_concurrency = 4

[storage]
root = "data"

[warehouse]
url = "duckdb:///data/wh.duckdb"

[[accounts]]
id = "acme"
api_key_env = "KEY_ACME"

[[accounts]]
id = "globex.eu_1"
api_key_env = "KEY_GLOBEX"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg" / "nugen.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_good_config_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), environ={"KEY_ACME": "k1", "KEY_GLOBEX": "k2"})
    assert cfg.storage_root == (tmp_path / "cfg" / "data").resolve()
    assert cfg.warehouse.url == f"duckdb:///{(tmp_path / 'cfg' / 'data' / 'wh.duckdb').resolve()}"
    assert [a.id for a in cfg.accounts] == ["acme", "globex.eu_1"]
    assert cfg.accounts[0].api_key == Secret("k1")
    assert cfg.api.max_concurrency == 4 and cfg.api.timeout_s == 5


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[accounts]]\nid = "a"\napi_key_env = "K"\n'), environ={"K": "x"})
    assert cfg.api.base_url == DEFAULT_BASE_URL
    assert cfg.storage_root == (tmp_path / "cfg" / "nugen-data").resolve()
    assert cfg.warehouse.url.endswith("/cfg/nugen-data/warehouse.duckdb")
    assert cfg.granularity.total_seconds() == 3600
    assert cfg.warehouse.duckdb_memory_limit == "auto"  # a budget per load (DuckDBWarehouse)
    assert cfg.warehouse.batch_accounts == 100
    # Every default is the dataclass field's: the parser writes none of its own.
    assert cfg.api == ApiConfig()
    assert cfg.warehouse == WarehouseConfig(url=cfg.warehouse.url)
    plain = Config(api=cfg.api, storage_root=cfg.storage_root, warehouse=cfg.warehouse, accounts=cfg.accounts)
    assert (cfg.granularity, cfg.fsync, cfg.vacuum_retention_hours, cfg.target_file_mb) == (
        plain.granularity,
        plain.fsync,
        plain.vacuum_retention_hours,
        plain.target_file_mb,
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ('duckdb_memory_limit = "2GiB"', "2GiB"),
        ('duckdb_memory_limit = "512 MB"', "512 MB"),
        ('duckdb_memory_limit = "none"', None),
        ('duckdb_memory_limit = "Auto"', "auto"),
        ('url = "postgresql://etl@db:5432/nugen"', None),
    ],
)
def test_duckdb_memory_limit(tmp_path: Path, line: str, expected: str | None) -> None:
    cfg = load_config(write(tmp_path, f'[warehouse]\n{line}\n[[accounts]]\nid = "a"\napi_key_env = "K"\n'), environ={"K": "x"})
    assert cfg.warehouse.duckdb_memory_limit == expected


def test_secrets_are_masked_in_repr(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), environ={"KEY_ACME": "sk-live-SECRET1", "KEY_GLOBEX": "sk-live-SECRET2"})
    text = repr(cfg) + str(cfg.accounts)
    assert "SECRET1" not in text and "SECRET2" not in text


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "with space", "ünï", "", "-lead", "x" * 65, 42])
def test_bad_account_ids_are_rejected_naming_the_field(tmp_path: Path, bad_id: object) -> None:
    value = f'"{bad_id}"' if isinstance(bad_id, str) else str(bad_id)
    with pytest.raises(ConfigError, match=r"accounts\[1\]\.id"):
        load_config(write(tmp_path, f'[[accounts]]\nid = {value}\napi_key_env = "K"\n'), environ={"K": "x"})


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[accounts]]\nid = "a"\napi_key_env = "K"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n', "duplicate account id 'a'"),
        ('[warehouse]\nurl = "mysql://x/y"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n', "unknown scheme 'mysql'"),
        ('[[accounts]]\nid = "a"\napi_key = "sk-123"\n', "keys never sit in the file"),
        ('[api]\nmax_concurrency = 0\n[[accounts]]\nid = "a"\napi_key_env = "K"\n', "api.max_concurrency"),
        ('[api]\nbase_url = "ftp://x"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n', "api.base_url"),
        ('[schedule]\ngranularity = "7h"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n', "schedule.granularity"),
        ('[warehouse]\npassword_env = "NOPE"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n', "NOPE is not set"),
        (
            '[warehouse]\nduckdb_memory_limit = "lots"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n',
            'duckdb_memory_limit: expected "auto", a size',
        ),
        (
            '[warehouse]\nurl = "postgresql://u@h/db"\nduckdb_memory_limit = "1GB"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n',
            "only applies to a duckdb",
        ),
        ("", "at least one"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_config_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={"K": "x"})


def test_missing_key_variable_is_named_when_the_account_is_used(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), environ={"KEY_ACME": "k1"})
    cfg.require_keys(cfg.select_accounts(["acme"]))
    with pytest.raises(ConfigError, match=r"globex\.eu_1 \(KEY_GLOBEX\)"):
        cfg.require_keys(cfg.accounts)


def test_unknown_selected_account(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), environ={})
    with pytest.raises(ConfigError, match="not in the configuration: nope"):
        cfg.select_accounts(["nope"])


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/nugen.toml")
