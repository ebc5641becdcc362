"""Hostile answers, end to end through the simulator into both warehouses.

Documented rules (nugen_etl/flatten.py, docs/reliability.md): a record that cannot be keyed is
quarantined with its reason; a value is coerced only when lossless, else nulled with a note in
``quality_issues``; a value outside its documented range is kept as reported and flagged; text
keeps every character but NUL and unpaired surrogates (replaced, noted); an answer that is not
UTF-8 JSON, or larger than ``api.max_body_bytes``, fails its account with the reason, and the
raw archive keeps what arrived. Never a crash of the run, never a silently dropped record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from nugen_etl.config import parse_config
from nugen_etl.fetch import ApiClient
from nugen_etl.pipeline import run_snapshot
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.sinks.archive import list_archived_slots, read_raw_answer
from nugen_etl.warehouse import open_warehouse

from .conftest import ENGINES, fresh_warehouse_url
from .e2e_helpers import FETCH_OFFSET, T0, environ_for, key_env

HOSTILE, NOT_UTF8, OVERSIZED, NORMAL = "acct-0001", "acct-0002", "acct-0003", "acct-0004"
SLOT = T0 + timedelta(hours=1)
CAP = 2 * 2**20
LONG = "Ω" * 300_000
CONTROL = "a\u0001b\u001b[31mc\td\ne\u007f\u2028f"


def record(model_id: object, **fields: object) -> str:
    return json.dumps({"id": model_id, "name": "n", "usage_count": 1, **fields})


# (JSON text of one record, as the wire carries it) -- NaN/Infinity and lone surrogates need raw text
RECORDS = [
    record("long", name=LONG),
    record("control", name=CONTROL),
    record("nul", name="a\u0000b"),
    '{"id": "surrogate", "name": "x\\ud800y", "usage_count": 1}',
    record("numbers-as-strings", usage_count="150", performance_metrics={"accuracy": "0.92", "domain_violations": "3"}),
    record("not-a-number", usage_count="lots", performance_metrics={"accuracy": "high"}),
    '{"id": "non-finite", "name": "n", "usage_count": 1, "performance_metrics": {"accuracy": NaN, '
    '"uncertainty": Infinity, "average_response_time": -Infinity}, "evaluation_data": {"score": NaN}}',
    record("negative", usage_count=-5, performance_metrics={"domain_violations": -2, "accuracy": 0.5}),
    record("out-of-range", performance_metrics={"accuracy": 1.7, "uncertainty": -0.1}),
    record("control", name="second copy"),  # duplicate id
    record("eval-list", evaluation_data=[1, 2, {"a": 3}]),
    record("eval-string", evaluation_data="great"),
    json.dumps({"name": "no id at all"}),
    record(42),
    record("\u0000nul-id"),
    json.dumps("a string where a model belongs"),
    record("huge", usage_count=10**30, performance_metrics={"accuracy": 1e400}),
]
BODY = ('{"domain_aligned_models": [' + ", ".join(RECORDS) + "]}").encode()
QUARANTINED = {
    9: "duplicate id (first seen at position 1)",
    12: "missing id",
    13: "id is not a string",
    14: "id contains a NUL character",
    15: "record is not an object",
}
INVALID_UTF8 = b'{"domain_aligned_models": [{"id": "m-\xff\xfe", "name": "x", "usage_count": 1}]}'
OVERSIZED_BODY = b'{"domain_aligned_models": [' + b",".join([b'{"id": "m", "name": "' + b"x" * 4096 + b'"}'] * 800) + b"]}"

# model id -> (column, expected stored value, expected note substrings)
EXPECTED = {
    "long": ("name", LONG, []),
    "control": ("name", CONTROL, []),
    "nul": ("name", "a\ufffdb", ["name: NUL character replaced with U+FFFD"]),
    "surrogate": ("name", "x\ufffdy", ["name: unpaired surrogate replaced with U+FFFD"]),
    "numbers-as-strings": ("usage_count", 150, []),
    "not-a-number": ("usage_count", None, ["usage_count: not an integer ('lots')", "performance_metrics.accuracy: not a number ('high')"]),
    "non-finite": (
        "accuracy",
        None,
        [
            "performance_metrics.accuracy: not a finite number (nan)",
            "performance_metrics.uncertainty: not a finite number (inf)",
            "performance_metrics.average_response_time: not a finite number (-inf)",
            "evaluation_data.score: not a finite number (nan)",
        ],
    ),
    "negative": (
        "usage_count",
        -5,
        ["usage_count: -5 negative where the API documents >= 0, kept as reported", "performance_metrics.domain_violations: -2 negative"],
    ),
    "out-of-range": (
        "accuracy",
        1.7,
        [
            "performance_metrics.accuracy: 1.7 outside the documented range [0, 1]",
            "performance_metrics.uncertainty: -0.1 outside the documented range",
        ],
    ),
    "eval-list": ("evaluation_data_json", '[1,2,{"a":3}]', ["evaluation_data: not an object (list), kept in evaluation_data_json"]),
    "eval-string": ("evaluation_data_json", '"great"', ["evaluation_data: not an object (string), kept in evaluation_data_json"]),
    "huge": ("usage_count", None, ["usage_count: integer out of int64 range", "performance_metrics.accuracy: not a finite number (inf)"]),
}


@pytest.fixture(scope="module", params=ENGINES)
def hostile_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hostile")
    state = SimulatorState(seed=41, accounts=5, models=3, start=T0)
    url = fresh_warehouse_url(request, request.param, root)
    with serve(state) as server:
        config = parse_config(
            {
                "api": {"base_url": server.base_url, "max_attempts": 2, "retry_base_delay_s": 0.01, "timeout_s": 5, "max_body_bytes": CAP},
                "storage": {"root": str(root), "fsync": False},
                "warehouse": {"url": url},
                "accounts": [{"id": a, "api_key_env": key_env(a)} for a in state.account_ids],
            },
            base_dir=root,
            environ=environ_for(state),
        )
        state.inject(HOSTILE, [Fault.body(BODY)])
        state.inject(NOT_UTF8, [Fault.body(INVALID_UTF8)])
        state.inject(OVERSIZED, [Fault.body(OVERSIZED_BODY)])
        state.set_time(SLOT + FETCH_OFFSET)
        summary = run_snapshot(config, snapshot_at=SLOT)
        with open_warehouse(url) as wh:
            yield {"summary": summary, "wh": wh, "root": root, "state": state, "config": config}


def test_the_run_survives_and_only_the_unreadable_answers_fail(hostile_run) -> None:
    summary, wh, state = hostile_run["summary"], hostile_run["wh"], hostile_run["state"]
    assert summary.exit_code == 1 and summary.failed_accounts == [NOT_UTF8, OVERSIZED]
    runs = {
        r[0]: r[1:]
        for r in wh.fetch_all(
            "select account_id, outcome, http_status, model_count, quarantined_count, attempts, error "
            "from nugen.account_runs where snapshot_at = ?",
            [SLOT],
        )
    }
    assert runs[NORMAL][:5] == ("ok", 200, len(state.models_at(NORMAL, SLOT + FETCH_OFFSET)), 0, 1)
    assert runs[state.empty_account_id][:2] == ("empty", 404)
    outcome, status, _, _, attempts, error = runs[NOT_UTF8]
    assert (outcome, status, attempts) == ("failed", 200, 1) and "malformed JSON body" in error
    assert "utf-8" in error.lower()
    outcome, status, _, _, attempts, error = runs[OVERSIZED]
    assert (outcome, status, attempts) == ("failed", 200, 1)
    assert error == f"response body exceeds {CAP} bytes"


def test_no_record_is_dropped_and_each_quarantine_has_its_reason(hostile_run) -> None:
    wh = hostile_run["wh"]
    ((model_count, quarantined_count, coerced_count),) = wh.fetch_all(
        "select model_count, quarantined_count, coerced_count from nugen.account_runs where account_id = ? and snapshot_at = ?",
        [HOSTILE, SLOT],
    )
    assert model_count + quarantined_count == len(RECORDS)
    quarantined = dict(
        wh.fetch_all("select position, reason from nugen.quarantined_records where account_id = ? and snapshot_at = ?", [HOSTILE, SLOT])
    )
    assert set(quarantined) == set(QUARANTINED)
    for position, reason in QUARANTINED.items():
        assert reason in quarantined[position]
    raw = dict(wh.fetch_all("select position, raw_json from nugen.quarantined_records where account_id = ?", [HOSTILE]))
    assert json.loads(raw[9]) == json.loads(RECORDS[9]), "a quarantined record keeps its raw JSON"
    ((notes,),) = wh.fetch_all("select count(*) from nugen.model_snapshots where account_id = ? and quality_issues is not null", [HOSTILE])
    assert notes == sum(1 for _, _, n in EXPECTED.values() if n) and coerced_count >= notes


@pytest.mark.parametrize("model_id", list(EXPECTED))
def test_each_hostile_value_is_stored_coerced_or_flagged(hostile_run, model_id: str) -> None:
    column, value, expected_notes = EXPECTED[model_id]
    ((stored, quality),) = hostile_run["wh"].fetch_all(
        f"select {column}, quality_issues from nugen.model_snapshots where account_id = ? and model_id = ?", [HOSTILE, model_id]
    )
    assert stored == value
    notes = json.loads(quality) if quality else []
    for expected in expected_notes:
        assert any(expected in note for note in notes), (expected, notes)
    if not expected_notes:
        assert notes == []


def test_lake_holds_the_same_rows(hostile_run) -> None:
    """Every hostile value reaches the Delta table exactly as the warehouse stored it."""
    lake = DeltaTable(str(hostile_run["root"] / "model_snapshots")).to_pyarrow_dataset()
    table = lake.to_table(filter=ds.field("account_id") == HOSTILE)
    stored = dict(hostile_run["wh"].fetch_all("select model_id, name from nugen.model_snapshots where account_id = ?", [HOSTILE]))
    assert table.num_rows == len(stored) > 0
    names = dict(zip(table.column("model_id").to_pylist(), table.column("name").to_pylist(), strict=False))
    assert names == stored
    assert names["long"] == LONG and names["control"] == CONTROL and names["nul"] == "a\ufffdb"


def test_raw_archive_keeps_what_arrived(hostile_run) -> None:
    root = hostile_run["root"]
    bodies = {}
    for account, _, paths in list_archived_slots(root, start=SLOT, end=SLOT + timedelta(seconds=1)):
        bodies[account] = read_raw_answer(paths[-1])
    assert bodies[HOSTILE].body == BODY
    assert bodies[NOT_UTF8].body == INVALID_UTF8, "the undecodable answer is kept byte for byte"
    assert bodies[OVERSIZED].body == b"" and bodies[OVERSIZED].error == f"response body exceeds {CAP} bytes"


class _Endless(httpx.SyncByteStream):
    """A 200 body without Content-Length that never ends; counts what the client pulled."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"[" + b"0," * 32_767
        while True:
            self.sent += len(chunk)
            yield chunk


def test_an_endless_body_is_cut_at_the_cap_memory_stays_bounded() -> None:
    stream = _Endless()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=stream))
    with ApiClient("https://api.example", transport=transport, max_body_bytes=1_000_000, sleep=lambda s: None) as c:
        raw = c.fetch_account("acme", "sk-test", snapshot_at=datetime(2026, 3, 1, tzinfo=UTC))
    assert raw.error == "response body exceeds 1000000 bytes" and raw.body == b"" and raw.attempts == 1
    assert stream.sent <= 1_000_000 + 65_536, "the client stopped reading at the cap"
