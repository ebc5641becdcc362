"""Secret hygiene: with DEBUG logging, every path of the command line -- success, each fault, each
exit code, backfill, migrate, a PostgreSQL warehouse with a password -- leaves no API key and no
warehouse password in anything it produced: stdout/stderr (logs), --json, the raw archive
(decompressed), the Delta lake (every data file, also replaced ones, and the commit log with its
metadata), the warehouse tables and files, exception text. ``repr`` masks secrets.

The simulator is also made hostile: it echoes the key back in a 401, a 422 and a 200 body.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nugen_etl.config import load_config
from nugen_etl.errors import NugenEtlError
from nugen_etl.fetch import ApiClient
from nugen_etl.pipeline import open_configured_warehouse
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.simulator.faults import detail_body
from nugen_etl.warehouse import open_warehouse

from .conftest import ENGINES
from .e2e_helpers import FETCH_OFFSET, REJECTED, T0, environ_for, write_toml_config
from .pg_scratch import create_database, drop_database
from .state_helpers import warehouse_dump

PASSWORD_ENV = "NUGEN_TEST_WH_PASSWORD"
SLOT = T0 + timedelta(hours=1)


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[SimulatorState, object]]:
    state = SimulatorState(seed=51, accounts=4, models=3, start=T0)
    with serve(state) as server:
        yield state, server


@pytest.fixture(scope="module")
def pg_role(pg_admin_url: str) -> Iterator[tuple[str, str]]:
    """(url without password, password) of a fresh role that owns a fresh database."""
    import psycopg
    from psycopg import sql

    name = f"nugen_secret_{secrets.token_hex(4)}"
    password = "pw-" + secrets.token_hex(16)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    url = create_database(pg_admin_url, name, owner=name)
    scheme, rest = url.split("://", 1)
    url = f"{scheme}://{name}@{rest.split('@', 1)[-1]}"
    try:
        yield url, password
    finally:
        drop_database(pg_admin_url, name)
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def write_config(folder: Path, base_url: str, accounts: list[str], warehouse: str, *, password_env: bool = False) -> Path:
    return write_toml_config(
        folder,
        base_url,
        accounts,
        api={"max_attempts": 2, "retry_base_delay_s": 0.01, "timeout_s": 2, "deadline_s": 1.5},
        warehouse={"url": warehouse, **({"password_env": PASSWORD_ENV} if password_env else {})},
    )


class Transcript:
    """Everything the runs produced, as (label, text) pairs, plus the environment they ran in."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.items: list[tuple[str, str]] = []

    def cli(self, label: str, config: Path, *args: str, expect: int) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "nugen_etl", "--log-level", "debug", *args, "--config", str(config)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.items += [(f"{label}: stdout", proc.stdout), (f"{label}: stderr", proc.stderr)]
        assert proc.returncode == expect, f"{label}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        if label.startswith("run"):
            assert " DEBUG " in proc.stderr, f"{label}: debug logging was not on"
        if "--json" in args:
            json.loads(proc.stdout)
        return proc.stderr

    def files(self, root: Path) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            if path.suffix == ".parquet":
                self.items.append((str(path), repr(pq.read_table(path).to_pylist())))
            self.items.append((str(path), data.decode("utf-8", "replace")))

    def warehouse(self, label: str, config: Path) -> None:
        with open_configured_warehouse(load_config(config, environ=self.env)) as wh:
            self.items.append((label, repr(warehouse_dump(wh))))

    def leaks(self, secret_values: list[str]) -> list[str]:
        return [f"{label} contains {secret[:10]}..." for label, text in self.items for secret in secret_values if secret in text]


def inject_faults(state: SimulatorState, round_: int) -> None:
    """One fault per account per run; the last round echoes the key back in three ways."""
    a, b, c, _ = state.account_ids
    if round_ == 0:
        state.inject(a, [Fault.status(429, retry_after="0"), Fault.status(503)])
        state.inject(b, [Fault.reset(), Fault.truncated()])
        state.inject(c, [Fault.malformed()])
    elif round_ == 1:
        state.inject(a, [Fault.status(404, body=b"<html>nope</html>")])
        state.inject(b, [Fault.status(422)])
        state.inject(c, [Fault.slow(3.0)])
    else:
        key_a, key_b, key_c = (state.api_key(x) for x in (a, b, c))
        state.inject(a, [Fault.status(401, body=detail_body(f"Invalid API key: {key_a}"))])
        state.inject(
            b, [Fault.status(422, body=detail_body([{"loc": ["header", "Authorization"], "msg": "malformed", "input": f"Bearer {key_b}"}]))]
        )
        echo = {
            "domain_aligned_models": [
                {"id": "m-1", "name": f"key {key_c}", "usage_count": 1, "evaluation_data": {"note": f"called with Bearer {key_c}"}}
            ]
        }
        state.inject(c, [Fault.body(json.dumps(echo).encode())])


def run_every_path(state: SimulatorState, base_url: str, folder: Path, warehouse: str, t: Transcript, *, password_env: bool) -> None:
    good = list(state.account_ids)
    config = write_config(folder, base_url, [*good, REJECTED], warehouse, password_env=password_env)
    at = ["--at", SLOT.isoformat(), "--force-slot"]
    state.set_time(SLOT + FETCH_OFFSET)
    t.cli("migrate", config, "migrate", expect=0)
    only_good = [x for a in good for x in ("--account", a)]
    t.cli("run ok", config, "run", *at, *only_good, "--json", expect=0)
    for round_ in range(3):
        inject_faults(state, round_)
        t.cli(f"run faults {round_}", config, "run", *at, "--json", expect=1)
        assert sum(state.pending_faults(a) for a in good) == 0
    t.cli("backfill", config, "backfill", "--from", SLOT.date().isoformat(), "--to", SLOT.date().isoformat(), "--json", expect=0)
    t.cli("exit 2: far slot", config, "run", "--at", "2001-01-01T00:00Z", expect=2)
    t.cli("exit 2: unknown account", config, "run", "--account", "nobody", expect=2)
    (folder / "unset").mkdir()
    unset = write_config(folder / "unset", base_url, [*good, "acct-unset"], warehouse, password_env=password_env)
    t.cli("exit 2: key variable unset", unset, "run", *at, expect=2)
    t.files(folder)
    t.warehouse("warehouse tables", config)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_secret_in_anything_a_run_produces(engine: str, sim, request, tmp_path: Path) -> None:
    state, server = sim
    env = environ_for(state)
    secret_values = list(env.values())
    if engine == "duckdb":
        warehouse, password_env = f"duckdb:///{tmp_path / 'data' / 'warehouse.duckdb'}", False
    else:
        warehouse, password = request.getfixturevalue("pg_role")
        env[PASSWORD_ENV] = password
        secret_values.append(password)
        password_env = True
    t = Transcript(env)
    run_every_path(state, server.base_url, tmp_path, warehouse, t, password_env=password_env)
    assert not t.leaks(secret_values)
    # the lake was really searched: data files and commits of every table
    labels = [Path(label).relative_to(tmp_path).as_posix() for label, _ in t.items if label.startswith(str(tmp_path))]
    for table in ("model_snapshots", "model_metrics", "account_runs"):
        assert any(x.startswith(f"data/{table}/snapshot_date=") and x.endswith(".parquet") for x in labels), table
        assert any(x.startswith(f"data/{table}/_delta_log/") and x.endswith(".json") for x in labels), table
    # the hostile echoes really happened and were masked, not avoided
    json_out = dict(t.items)["run faults 2: stdout"]
    assert "Invalid API key: ***" in json_out and "Bearer ***" in json_out
    assert "key ***" in dict(t.items)["warehouse tables"]
    assert any("key ***" in text for label, text in t.items if label.endswith(".parquet")), "masked in the lake too"
    raw = " ".join(text for label, text in t.items if label.endswith(".raw.gz"))
    assert "Invalid API key: ***" in raw and "Bearer ***" in raw and "called with Bearer ***" in raw


def test_unreachable_postgres_with_password_says_so_without_it(sim, tmp_path: Path) -> None:
    state, server = sim
    password = "pw-" + secrets.token_hex(16)
    env = {**environ_for(state), PASSWORD_ENV: password}
    t = Transcript(env)
    closed = f"postgresql://etl:{password}@127.0.0.1:1/nowhere"
    config = write_config(tmp_path, server.base_url, list(state.account_ids), closed, password_env=True)
    err = t.cli("unreachable warehouse", config, "run", "--at", SLOT.isoformat(), "--force-slot", expect=3)
    assert "cannot connect to PostgreSQL warehouse postgresql://etl:***@127.0.0.1:1/nowhere" in err
    journal = sorted(tmp_path.rglob("pending/*.json"))
    assert journal, "the deferred loads are journaled, with the reason"
    t.files(journal[0].parent.parent)  # the storage root: the journal with its reasons, the raw archive, the lake
    with pytest.raises(NugenEtlError) as info:
        open_warehouse(closed, password=password)
    t.items.append(("exception", "".join(traceback.format_exception(info.value))))
    t.items.append(("exception repr", repr(info.value)))
    assert not t.leaks([password])


def test_repr_of_configuration_and_clients_masks_secrets(sim, tmp_path: Path) -> None:
    state, server = sim
    password = "pw-" + secrets.token_hex(16)
    env = {**environ_for(state), PASSWORD_ENV: password}
    config = load_config(
        write_config(tmp_path, server.base_url, list(state.account_ids), f"postgresql://etl:{password}@db:5432/wh", password_env=True),
        environ=env,
    )
    shown = " ".join(
        [
            repr(config),
            str(config),
            repr(config.accounts),
            repr(config.warehouse),
            repr(config.api),
            repr(ApiClient(server.base_url)),
            str(config.warehouse.password),
        ]
    )
    for secret in [*environ_for(state).values(), password]:
        assert secret not in shown
    assert "Secret('****')" in repr(config.accounts[0])
    assert config.warehouse.password is not None and config.warehouse.password.reveal() == password
