"""The fault matrix: every upstream misbehaviour of issue 5 x its documented outcome and attempt count.

Each case runs ``run_snapshot`` over real HTTP on loopback against the simulator with four accounts:
``acct-0001`` gets the fault, ``acct-0002`` (models), ``acct-0003`` (no models: 404 "No aligned
models found") and ``acct-bad`` (rejected key) must come out exactly as on a quiet day. Each case
writes its own slot into one warehouse per engine, so the cases also prove that a slot's outcome
is recorded in ``account_runs`` next to the others.
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from nugen_etl.config import Config, parse_config
from nugen_etl.pipeline import run_snapshot
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.simulator.faults import detail_body
from nugen_etl.sinks.archive import list_archived_slots
from nugen_etl.warehouse import open_warehouse

from .conftest import ENGINES, fresh_warehouse_url
from .e2e_helpers import FETCH_OFFSET, REJECTED, T0, environ_for, key_env

FAULTY, HEALTHY = "acct-0001", "acct-0002"
MAX_ATTEMPTS = 3
API = {"timeout_s": 2, "max_concurrency": 4, "max_attempts": MAX_ATTEMPTS, "retry_base_delay_s": 0.01, "deadline_s": 10}


@dataclass(frozen=True)
class Case:
    name: str
    faults: Callable[[], list[Fault]]  # built when the case runs (HTTP dates need "now")
    outcome: str
    attempts: int
    status: int | None
    error: str | None = None  # a substring of account_runs.error
    api: dict[str, Any] = field(default_factory=dict)
    refused: bool = False  # acct-0001 points at a port nobody listens on


def _http_date_now() -> str:
    return email.utils.formatdate(time.time(), usegmt=True)


def _times(fault: Fault, n: int) -> Callable[[], list[Fault]]:
    return lambda: [fault] * n


STALL = {"timeout_s": 0.5}
CASES = [
    Case("429 Retry-After 0 s then 200", lambda: [Fault.status(429, retry_after="0")], "ok", 2, 200),
    Case("429 Retry-After 1 s then 200", lambda: [Fault.status(429, retry_after="1")], "ok", 2, 200),
    Case("429 Retry-After HTTP-date then 200", lambda: [Fault.status(429, retry_after=_http_date_now())], "ok", 2, 200),
    Case("429 without Retry-After then 200", lambda: [Fault.status(429)], "ok", 2, 200),
    Case(
        "429 on every attempt",
        _times(Fault.status(429, retry_after="0"), MAX_ATTEMPTS),
        "failed",
        MAX_ATTEMPTS,
        429,
        f"HTTP 429 after {MAX_ATTEMPTS} attempts",
    ),
    *[Case(f"{code} then 200", lambda code=code: [Fault.status(code)], "ok", 2, 200) for code in (500, 502, 503, 504)],
    Case("503 twice then 200", _times(Fault.status(503), 2), "ok", 3, 200),
    Case("permanent 503", _times(Fault.status(503), MAX_ATTEMPTS), "failed", MAX_ATTEMPTS, 503, f"HTTP 503 after {MAX_ATTEMPTS} attempts"),
    Case("connection refused", lambda: [], "failed", MAX_ATTEMPTS, None, "ConnectError", refused=True),
    Case("read timeout mid-body then 200", lambda: [Fault.stall(1.5)], "ok", 2, 200, api=STALL),
    Case(
        "read timeout mid-body on every attempt",
        _times(Fault.stall(1.5), MAX_ATTEMPTS),
        "failed",
        MAX_ATTEMPTS,
        None,
        "ReadTimeout",
        api=STALL,
    ),
    Case("connection reset then 200", lambda: [Fault.reset()], "ok", 2, 200),
    Case("connection reset on every attempt", _times(Fault.reset(), MAX_ATTEMPTS), "failed", MAX_ATTEMPTS, None, "transport error"),
    Case("truncated body then 200", lambda: [Fault.truncated()], "ok", 2, 200),
    Case("truncated body on every attempt", _times(Fault.truncated(), MAX_ATTEMPTS), "failed", MAX_ATTEMPTS, None, "transport error"),
    Case("non-JSON 200 (cut-off JSON)", lambda: [Fault.malformed()], "failed", 1, 200, "malformed JSON"),
    Case(
        "non-JSON 200 (HTML)",
        lambda: [Fault.body(b"<html><body>maintenance</body></html>", content_type="text/html")],
        "failed",
        1,
        200,
        "malformed JSON",
    ),
    Case("200 JSON list, not an object", lambda: [Fault.body(b'[{"id": "m"}]')], "failed", 1, 200, "body is JSON list"),
    Case("200 JSON string, not an object", lambda: [Fault.body(b'"ok"')], "failed", 1, 200, "body is JSON str"),
    Case("domain_aligned_models missing", lambda: [Fault.body(b'{"models": []}')], "failed", 1, 200, "domain_aligned_models is missing"),
    Case(
        "domain_aligned_models an object", lambda: [Fault.body(b'{"domain_aligned_models": {"id": "m"}}')], "failed", 1, 200, "not a list"
    ),
    Case("domain_aligned_models null", lambda: [Fault.body(b'{"domain_aligned_models": null}')], "failed", 1, 200, "not a list"),
    Case("200 empty list", lambda: [Fault.body(b'{"domain_aligned_models": []}')], "empty", 1, 200),
    Case("401", lambda: [Fault.status(401)], "auth_failed", 1, 401, "Invalid API key"),
    Case("403", lambda: [Fault.status(403)], "auth_failed", 1, 403, "Not authenticated"),
    Case("404 No aligned models found", lambda: [Fault.status(404, body=detail_body("No aligned models found"))], "empty", 1, 404),
    Case(
        "404 with an HTML body",
        lambda: [Fault.status(404, body=b"<html><h1>404 Not Found</h1></html>")],
        "failed",
        1,
        404,
        "not the 'no models' answer",
    ),
    Case("404 other JSON detail", lambda: [Fault.status(404)], "failed", 1, 404, "Not Found"),
    Case("400", lambda: [Fault.status(400)], "failed", 1, 400, "Bad request"),
    Case("422 with its detail list", lambda: [Fault.status(422)], "failed", 1, 422, "field required"),
    Case(
        "200 slower than the per-account deadline",
        lambda: [Fault.slow(2.5)],
        "failed",
        1,
        None,
        "deadline of 1s exhausted",
        api={"deadline_s": 1.0, "timeout_s": 5},
    ),
]


def test_matrix_size(capsys: pytest.CaptureFixture[str]) -> None:
    n_engines = len(ENGINES)
    with capsys.disabled():
        print(
            f"\nfault matrix: {len(CASES)} upstream behaviours x {n_engines} warehouse engines = "
            f"{len(CASES) * n_engines} runs, each also checking 3 unaffected accounts"
        )
    assert len({c.name for c in CASES}) == len(CASES) >= 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(root: Path, base_url: str, state: SimulatorState, warehouse_url: str, *, api: dict[str, Any], refused: bool) -> Config:
    accounts = [{"id": a, "api_key_env": key_env(a)} for a in [*state.account_ids, REJECTED]]
    if refused:
        accounts[0]["base_url"] = f"http://127.0.0.1:{_free_port()}"
    data = {
        "api": {"base_url": base_url, **API, **api},
        "storage": {"root": str(root), "fsync": False},
        "warehouse": {"url": warehouse_url, "batch_accounts": 2},
        "accounts": accounts,
    }
    return parse_config(data, base_dir=root, environ=environ_for(state))


@pytest.fixture(scope="module", params=ENGINES)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("faults")
    state = SimulatorState(seed=5, accounts=3, models=3, start=T0)
    url = fresh_warehouse_url(request, request.param, root)
    with serve(state) as server, open_warehouse(url) as wh:
        wh.migrate()
        yield {"root": root, "state": state, "server": server, "url": url, "warehouse": wh}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_ends_in_its_documented_outcome_and_spares_the_others(world, case: Case) -> None:
    state, wh, root = world["state"], world["warehouse"], world["root"]
    slot = T0 + timedelta(hours=CASES.index(case))
    config = make_config(root, world["server"].base_url, state, world["url"], api=case.api, refused=case.refused)
    state.set_time(slot + FETCH_OFFSET)
    state.reset_counts()
    state.inject(FAULTY, case.faults())

    summary = run_snapshot(config, snapshot_at=slot, warehouse=wh)

    runs = {
        r[0]: r[1:]
        for r in wh.fetch_all(
            "select account_id, outcome, http_status, model_count, attempts, error from nugen.account_runs where snapshot_at = ?", [slot]
        )
    }
    rows = dict(wh.fetch_all("select account_id, count(*) from nugen.model_snapshots where snapshot_at = ? group by account_id", [slot]))
    outcome, status, count, attempts, error = runs[FAULTY]
    assert (outcome, status, attempts) == (case.outcome, case.status, case.attempts), error
    assert state.pending_faults(FAULTY) == 0, "every scripted fault was consumed"
    assert state.request_count(FAULTY) == (0 if case.refused else case.attempts)
    if case.error is None:
        assert error is None
    else:
        assert error is not None and case.error in error
    expected_models = len(state.models_at(FAULTY, slot + FETCH_OFFSET)) if outcome == "ok" else 0
    assert (count, rows.get(FAULTY, 0)) == (expected_models, expected_models)
    # the lake holds the same: the slot's rows per account, and every account's run
    in_slot = ds.field("snapshot_at") == slot
    lake_rows = DeltaTable(str(root / "model_snapshots")).to_pyarrow_dataset().to_table(filter=in_slot, columns=["account_id"])
    assert Counter(lake_rows["account_id"].to_pylist()) == rows
    lake_runs = (
        DeltaTable(str(root / "account_runs"))
        .to_pyarrow_dataset()
        .to_table(filter=in_slot, columns=["account_id", "outcome", "attempts"])
        .to_pylist()
    )
    assert {r["account_id"]: (r["outcome"], r["attempts"]) for r in lake_runs} == {a: (o, n) for a, (o, _, _, n, _) in runs.items()}

    # every other account of the same run: exactly a quiet day
    healthy_models = len(state.models_at(HEALTHY, slot + FETCH_OFFSET))
    assert runs[HEALTHY] == ("ok", 200, healthy_models, 1, None)
    assert rows[HEALTHY] == healthy_models
    assert runs[state.empty_account_id][:4] == ("empty", 404, 0, 1)
    assert runs[REJECTED][:4] == ("auth_failed", 401, 0, 1)
    for account in (HEALTHY, state.empty_account_id, REJECTED):
        assert state.request_count(account) == (0 if account == REJECTED else 1)
    assert summary.exit_code == 1
    assert summary.failed_accounts == sorted({REJECTED} | ({FAULTY} if case.outcome not in ("ok", "empty") else set()))
    # every answer, failures included, reached the raw archive first
    archived = {a for a, s, _ in list_archived_slots(root, start=slot, end=slot + timedelta(seconds=1))}
    assert archived == {*state.account_ids, REJECTED}
