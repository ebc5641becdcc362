"""flatten_models on recorded-shape fixtures and on hostile records: exact rows out."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nugen_etl import schemas
from nugen_etl.coercion import as_timestamp
from nugen_etl.flatten import MAX_DEPTH, Flattened, flatten_models
from tests.flatten_paths import as_chosen, flatten_path  # noqa: F401 - flatten_path is the fixture

FIXTURES = Path(__file__).parent / "fixtures"
UTC = UTC
SNAP = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FETCHED = datetime(2024, 3, 1, 12, 0, 3, tzinfo=UTC)
ACCOUNT = "acct-1"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def load(name: str) -> list[Any]:
    return json.loads((FIXTURES / name).read_text())["domain_aligned_models"]


pytestmark = pytest.mark.usefixtures("flatten_path")  # every test runs on both flatten paths


def run(models: list[Any]) -> Flattened:
    return flatten_models(as_chosen(models), account_id=ACCOUNT, snapshot_at=SNAP, fetched_at=FETCHED)


def model(**fields: Any) -> dict[str, Any]:
    """A minimal valid record; ``fields`` override or add keys."""
    return {"id": "m-1", "name": "n", **fields}


def one_row(models: list[Any]) -> dict[str, Any]:
    rows = run(models).snapshots.to_pylist()
    assert len(rows) == 1
    return rows[0]


def issues(row: dict[str, Any]) -> list[str] | None:
    return None if row["quality_issues"] is None else json.loads(row["quality_issues"])


def metrics(result: Flattened) -> list[tuple[str, str, float]]:
    return [(r["model_id"], r["metric"], r["value"]) for r in result.metrics.to_pylist()]


SLOT = {"account_id": ACCOUNT, "snapshot_at": SNAP, "snapshot_date": date(2024, 3, 1), "fetched_at": FETCHED}
NO_BEFORE_AFTER = {f"pm_{m}_{w}": None for m in ("accuracy", "uncertainty", "domain_violations") for w in ("before", "after")}

# --- the two documented shapes ---------------------------------------------------------------


def test_nested_shape_snapshots_exact() -> None:
    rows = run(load("aligned_models_nested.json")).snapshots.to_pylist()
    assert rows == [
        {
            **SLOT,
            **NO_BEFORE_AFTER,
            "model_id": "alignment-xyz789-deployed",
            "model_key": "alignment-xyz789",
            "alignment_id": "alignment-xyz789",
            "name": "customer_support_model",
            "base_model": "nugen-flash-instruct",
            "alignment_project": "Customer Support Alignment",
            "created_date": ts("2024-01-15T10:30:00+00:00"),
            "status": "DEPLOYED",
            "deployment_status": "DEPLOYED",
            "endpoint": "https://api.nugen.in/api/v3/inference/completions/alignment-xyz789-deployed",
            "creator": "user@example.com",
            "usage_count": 150,
            "last_used": ts("2024-01-20T14:30:00+00:00"),
            "downloadable": True,
            "conversation_saving_enabled": True,
            "accuracy": 0.92,
            "uncertainty": 0.15,
            "domain_violations": 2,
            "average_response_time": 1.2,
            "pm_accuracy": 0.92,
            "pm_uncertainty": 0.15,
            "pm_domain_violations": 2,
            "pm_average_response_time": 1.2,
            "eval_id": "eval-abc123",
            "eval_status": "READY",
            "eval_method": "eval",
            "eval_created_at": ts("2024-01-16T07:45:00+00:00"),
            "eval_completed_at": ts("2024-01-16T08:00:00+00:00"),
            "eval_raw_answers_count": 50,
            "eval_total_questions": None,
            "eval_accuracy": None,
            "eval_metrics_accuracy": 0.92,
            "eval_metrics_uncertainty": 0.15,
            "eval_metrics_domain_violations": 2,
            "eval_metrics_overall_score": 0.92,
            "extra_json": None,
            "evaluation_data_json": (
                '{"completed_at":"2024-01-16T08:00:00Z","created_at":"2024-01-16T07:45:00Z",'
                '"evaluation_id":"eval-abc123","method":"eval","metrics":{"accuracy":0.92,'
                '"domain_violations":2,"overall_score":0.92,"uncertainty":0.15},'
                '"raw_answers_count":50,"status":"READY"}'
            ),
            "quality_issues": None,
        },
        {
            **SLOT,
            **NO_BEFORE_AFTER,
            "model_id": "alignment-abc456",
            "model_key": "alignment-abc456",
            "alignment_id": "alignment-abc456",
            "name": "legal_document_assistant",
            "base_model": "nugen-flash-instruct",
            "alignment_project": "Legal Domain Alignment",
            "created_date": ts("2024-02-01T09:15:00+00:00"),
            "status": "UNDEPLOYED",
            "deployment_status": "UNDEPLOYED",
            "endpoint": "",
            "creator": "user@example.com",
            "usage_count": 0,
            "last_used": None,
            "downloadable": False,
            "conversation_saving_enabled": False,
            # metrics.uncertainty / domain_violations are absent: the plain pm values win anyway
            "accuracy": 0.88,
            "uncertainty": 0.18,
            "domain_violations": 3,
            "average_response_time": 0.0,
            "pm_accuracy": 0.88,
            "pm_uncertainty": 0.18,
            "pm_domain_violations": 3,
            "pm_average_response_time": 0.0,
            "eval_id": "eval-def456",
            "eval_status": "READY",
            "eval_method": "eval",
            "eval_created_at": ts("2024-02-01T11:45:00+00:00"),
            "eval_completed_at": ts("2024-02-01T12:00:00+00:00"),
            "eval_raw_answers_count": 40,
            "eval_total_questions": None,
            "eval_accuracy": None,
            "eval_metrics_accuracy": 0.88,
            "eval_metrics_uncertainty": None,
            "eval_metrics_domain_violations": None,
            "eval_metrics_overall_score": 0.88,
            "extra_json": None,
            "evaluation_data_json": (
                '{"completed_at":"2024-02-01T12:00:00Z","created_at":"2024-02-01T11:45:00Z",'
                '"evaluation_id":"eval-def456","method":"eval","metrics":{"accuracy":0.88,'
                '"overall_score":0.88},"raw_answers_count":40,"status":"READY"}'
            ),
            "quality_issues": None,
        },
    ]


def test_nested_shape_metrics_and_evaluations_exact() -> None:
    result = run(load("aligned_models_nested.json"))
    first, second = "alignment-xyz789-deployed", "alignment-abc456"
    assert metrics(result) == [
        # per record: performance_metrics, then evaluation_data; keys sorted at every level
        (first, "performance_metrics.accuracy", 0.92),
        (first, "performance_metrics.average_response_time", 1.2),
        (first, "performance_metrics.domain_violations", 2.0),
        (first, "performance_metrics.uncertainty", 0.15),
        (first, "evaluation_data.metrics.accuracy", 0.92),
        (first, "evaluation_data.metrics.domain_violations", 2.0),
        (first, "evaluation_data.metrics.overall_score", 0.92),
        (first, "evaluation_data.metrics.uncertainty", 0.15),
        (first, "evaluation_data.raw_answers_count", 50.0),
        (second, "performance_metrics.accuracy", 0.88),
        (second, "performance_metrics.average_response_time", 0.0),
        (second, "performance_metrics.domain_violations", 3.0),
        (second, "performance_metrics.uncertainty", 0.18),
        (second, "evaluation_data.metrics.accuracy", 0.88),
        (second, "evaluation_data.metrics.overall_score", 0.88),
        (second, "evaluation_data.raw_answers_count", 40.0),
    ]
    assert result.metrics.to_pylist()[0] == {
        "account_id": ACCOUNT,
        "model_id": first,
        "snapshot_at": SNAP,
        "metric": "performance_metrics.accuracy",
        "snapshot_date": date(2024, 3, 1),
        "model_key": "alignment-xyz789",
        "value": 0.92,
    }

    evaluations = result.evaluations.to_pylist()
    snapshots = result.snapshots.to_pylist()
    assert [{k: v for k, v in e.items() if k != "evaluation_data_json"} for e in evaluations] == [
        {
            "account_id": ACCOUNT,
            "evaluation_id": "eval-abc123",
            "model_id": first,
            "model_key": "alignment-xyz789",
            "status": "READY",
            "method": "eval",
            "created_at": ts("2024-01-16T07:45:00+00:00"),
            "completed_at": ts("2024-01-16T08:00:00+00:00"),
            "raw_answers_count": 50,
            "total_questions": None,
            "accuracy": 0.92,
            "uncertainty": 0.15,
            "domain_violations": 2,
            "overall_score": 0.92,
            "first_seen_at": SNAP,
            "last_seen_at": SNAP,
        },
        {
            "account_id": ACCOUNT,
            "evaluation_id": "eval-def456",
            "model_id": second,
            "model_key": "alignment-abc456",
            "status": "READY",
            "method": "eval",
            "created_at": ts("2024-02-01T11:45:00+00:00"),
            "completed_at": ts("2024-02-01T12:00:00+00:00"),
            "raw_answers_count": 40,
            "total_questions": None,
            "accuracy": 0.88,
            "uncertainty": None,
            "domain_violations": None,
            "overall_score": 0.88,
            "first_seen_at": SNAP,
            "last_seen_at": SNAP,
        },
    ]
    assert [e["evaluation_data_json"] for e in evaluations] == [s["evaluation_data_json"] for s in snapshots]
    assert result.quarantine.num_rows == 0
    assert result.coerced_count == 0


def test_before_after_shape_exact() -> None:
    result = run(load("aligned_models_before_after.json"))
    assert result.snapshots.to_pylist() == [
        {
            **SLOT,
            "model_id": "aligned-model-01kmqm4nrn9fw6r",
            "model_key": "alignment-xyz789",
            "alignment_id": "alignment-xyz789",
            "name": "customer_support_model",
            "base_model": "nugen-flash-instruct",
            "alignment_project": "Customer Support Alignment",
            "created_date": ts("2024-01-15T10:30:00+00:00"),
            "status": "DEPLOYED",
            "deployment_status": "DEPLOYED",
            "endpoint": "https://api.example.com/v1/models/alignment-xyz789",
            "creator": "user@example.com",
            "usage_count": 150,
            "last_used": ts("2024-01-20T14:30:00+00:00"),
            "downloadable": True,
            "conversation_saving_enabled": True,
            # canonical values come from the _after keys; there is no response time at all
            "accuracy": 0.92,
            "uncertainty": 0.15,
            "domain_violations": 2,
            "average_response_time": None,
            "pm_accuracy": None,
            "pm_uncertainty": None,
            "pm_domain_violations": None,
            "pm_average_response_time": None,
            "pm_accuracy_before": 0.75,
            "pm_accuracy_after": 0.92,
            "pm_uncertainty_before": 0.35,
            "pm_uncertainty_after": 0.15,
            "pm_domain_violations_before": 12,
            "pm_domain_violations_after": 2,
            "eval_id": None,
            "eval_status": None,
            "eval_method": None,
            "eval_created_at": None,
            "eval_completed_at": None,
            "eval_raw_answers_count": None,
            "eval_total_questions": 50,
            "eval_accuracy": 0.92,
            "eval_metrics_accuracy": None,
            "eval_metrics_uncertainty": None,
            "eval_metrics_domain_violations": None,
            "eval_metrics_overall_score": None,
            "extra_json": None,
            "evaluation_data_json": '{"accuracy":0.92,"total_questions":50}',
            "quality_issues": None,
        },
    ]
    m = "aligned-model-01kmqm4nrn9fw6r"
    assert metrics(result) == [
        (m, "performance_metrics.accuracy_after", 0.92),
        (m, "performance_metrics.accuracy_before", 0.75),
        (m, "performance_metrics.domain_violations_after", 2.0),
        (m, "performance_metrics.domain_violations_before", 12.0),
        (m, "performance_metrics.uncertainty_after", 0.15),
        (m, "performance_metrics.uncertainty_before", 0.35),
        (m, "evaluation_data.accuracy", 0.92),
        (m, "evaluation_data.total_questions", 50.0),
    ]
    assert result.evaluations.num_rows == 0  # flat evaluation_data has no evaluation_id


# --- canonical columns and keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pm", "evaluation", "expected"),
    [
        ({"accuracy": 0.5, "accuracy_after": 0.6}, {"metrics": {"accuracy": 0.7}, "accuracy": 0.8}, 0.5),
        ({"accuracy_after": 0.6}, {"metrics": {"accuracy": 0.7}, "accuracy": 0.8}, 0.6),
        ({}, {"metrics": {"accuracy": 0.7}, "accuracy": 0.8}, 0.7),
        ({}, {"accuracy": 0.8}, 0.8),
        ({}, None, None),
    ],
)
def test_accuracy_coalesces_in_documented_order(pm: dict[str, Any], evaluation: Any, expected: float | None) -> None:
    row = one_row([model(performance_metrics=pm, evaluation_data=evaluation)])
    assert row["accuracy"] == expected


def test_uncertainty_and_violations_fall_back_to_evaluation_metrics() -> None:
    row = one_row([model(performance_metrics={}, evaluation_data={"metrics": {"uncertainty": 0.1, "domain_violations": 4}})])
    assert (row["uncertainty"], row["domain_violations"]) == (0.1, 4)


@pytest.mark.parametrize(("alignment_id", "key"), [("al-1", "al-1"), (None, "m-1"), ("", "m-1")])
def test_model_key_is_alignment_id_else_id(alignment_id: str | None, key: str) -> None:
    row = one_row([model(alignment_id=alignment_id)])
    assert row["model_key"] == key
    assert row["alignment_id"] == alignment_id


def test_missing_optional_fields_are_null_and_not_reported() -> None:
    row = one_row([{"id": "m-1"}])
    assert row["conversation_saving_enabled"] is None  # the documented default is not invented
    assert row["last_used"] is None and row["evaluation_data_json"] is None
    assert row["quality_issues"] is None


def test_snapshot_date_is_the_utc_date() -> None:
    late = datetime(2024, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=5)))  # 2024-03-01 20:30Z
    result = flatten_models([model()], account_id=ACCOUNT, snapshot_at=late, fetched_at=late)
    row = result.snapshots.to_pylist()[0]
    assert row["snapshot_date"] == date(2024, 3, 1)
    assert row["snapshot_at"] == datetime(2024, 3, 1, 20, 30, tzinfo=UTC)


def test_naive_slot_times_are_refused() -> None:
    with pytest.raises(ValueError, match="snapshot_at"):
        flatten_models([], account_id=ACCOUNT, snapshot_at=datetime(2024, 3, 1), fetched_at=FETCHED)


# --- coercion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("usage_count", "150", 150),
        ("usage_count", 2.0, 2),
        ("usage_count", "1e2", 100),
        ("downloadable", "true", True),
        ("downloadable", "FALSE", False),
        ("alignment_id", 7, "7"),
        ("name", 'quo"te \\ üñí 字', 'quo"te \\ üñí 字'),
    ],
)
def test_lossless_coercions_are_silent(field: str, value: Any, expected: Any) -> None:
    row = one_row([model(**{field: value})])
    assert row[field] == expected
    assert row["quality_issues"] is None


def test_numeric_string_becomes_a_double() -> None:
    row = one_row([model(performance_metrics={"accuracy": "0.92", "average_response_time": 1})])
    assert (row["pm_accuracy"], row["accuracy"], row["average_response_time"]) == (0.92, 0.92, 1.0)
    assert row["quality_issues"] is None


@pytest.mark.parametrize(
    ("field", "value", "note"),
    [
        ("usage_count", "abc", "usage_count: not an integer ('abc')"),
        ("usage_count", True, "usage_count: not an integer (True)"),
        ("usage_count", 2.5, "usage_count: not an integer (2.5)"),
        ("usage_count", 2**63, "usage_count: integer out of int64 range (9223372036854775808)"),
        ("usage_count", "\u0661\u0665", "usage_count: not an integer ('\u0661\u0665')"),  # non-ASCII digits
        ("downloadable", 1, "downloadable: not a boolean (1)"),
        ("name", 1.5, "name: not a string (1.5)"),
        ("name", {"a": 1}, "name: not a string ({'a': 1})"),
        ("created_date", "yesterday", "created_date: not an ISO 8601 timestamp ('yesterday')"),
        ("created_date", "2024-01-15", "created_date: not an ISO 8601 timestamp ('2024-01-15')"),
        ("created_date", 1705314600, "created_date: not an ISO 8601 timestamp (1705314600)"),
    ],
)
def test_lossy_values_become_null_and_are_reported(field: str, value: Any, note: str) -> None:
    result = run([model(**{field: value})])
    row = result.snapshots.to_pylist()[0]
    assert row[field] is None
    assert issues(row) == [note]
    assert result.coerced_count == 1


def test_bool_is_not_a_double() -> None:
    row = one_row([model(performance_metrics={"accuracy": True})])
    assert row["pm_accuracy"] is None and row["accuracy"] is None
    assert issues(row) == ["performance_metrics.accuracy: not a number (True)"]


def test_long_offending_values_are_cut_in_notes() -> None:
    row = one_row([model(usage_count="x" * 500)])
    (note,) = issues(row)
    assert note.startswith("usage_count: not an integer ('xxx") and len(note) < 130


def test_nan_and_infinity_are_null_reported_once_and_dropped_from_metrics() -> None:
    result = run(
        [model(performance_metrics={"accuracy": math.nan, "uncertainty": 0.2}, evaluation_data={"metrics": {"overall_score": -math.inf}})]
    )
    row = result.snapshots.to_pylist()[0]
    assert row["pm_accuracy"] is None and row["eval_metrics_overall_score"] is None
    assert issues(row) == [
        "performance_metrics.accuracy: not a finite number (nan)",
        "evaluation_data.metrics.overall_score: not a finite number (-inf)",
    ]
    assert result.coerced_count == 2
    assert row["evaluation_data_json"] == '{"metrics":{"overall_score":null}}'  # still valid JSON
    assert metrics(result) == [("m-1", "performance_metrics.uncertainty", 0.2)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T10:30:00Z", "2024-01-15T10:30:00+00:00"),
        ("2024-01-15T10:30:00.5Z", "2024-01-15T10:30:00.500000+00:00"),
        ("2024-01-15T10:30:00+05:30", "2024-01-15T05:00:00+00:00"),
        ("2024-01-15T10:30:00.123456-01:00", "2024-01-15T11:30:00.123456+00:00"),
        ("2024-01-15T10:30:00", "2024-01-15T10:30:00+00:00"),  # naive: UTC
        ("2024-01-15 10:30:00+0100", "2024-01-15T09:30:00+00:00"),
    ],
)
def test_timestamps_are_normalised_to_utc(text: str, expected: str) -> None:
    row = one_row([model(last_used=text)])
    assert row["last_used"] == ts(expected)
    assert row["quality_issues"] is None


def test_sub_microsecond_digits_are_cut_and_reported() -> None:
    row = one_row([model(last_used="2024-01-15T10:30:00.123456789Z", created_date="2024-01-15T10:30:00.123456000Z")])
    assert row["last_used"] == ts("2024-01-15T10:30:00.123456+00:00")
    assert row["created_date"] == ts("2024-01-15T10:30:00.123456+00:00")  # zeros: lossless
    assert issues(row) == ["last_used: sub-microsecond digits cut ('2024-01-15T10:30:00.123456789Z')"]


def test_nul_bytes_are_replaced_and_reported() -> None:
    row = one_row([model(name="a\x00b", creator="ok", evaluation_data={"method": "x\x00"})])
    assert row["name"] == "a\ufffdb"
    assert row["eval_method"] == "x\ufffd"
    assert issues(row) == ["name: NUL character replaced with U+FFFD", "evaluation_data.method: NUL character replaced with U+FFFD"]
    assert row["evaluation_data_json"] == '{"method":"x\\u0000"}'  # JSON keeps it, escaped


def test_unpaired_surrogates_do_not_break_arrow() -> None:
    result = run([model(name="a\ud800", odd="\udfff")])
    row = result.snapshots.to_pylist()[0]
    assert row["name"] == "a\ufffd"
    assert issues(row) == ["name: unpaired surrogate replaced with U+FFFD"]
    assert json.loads(row["extra_json"]) == {"odd": "\udfff"}  # escaped in JSON: lossless


# --- extra_json and evaluation_data ------------------------------------------------------------


def test_unknown_fields_go_to_extra_json() -> None:
    row = one_row([model(zeta=[1, "two"], alpha={"b": None, "a": "é"}, performance_metrics={"accuracy": 0.9, "p95_latency": 2.5})])
    assert row["extra_json"] == ('{"alpha":{"a":"é","b":null},"performance_metrics":{"p95_latency":2.5},"zeta":[1,"two"]}')
    assert row["pm_accuracy"] == 0.9 and row["quality_issues"] is None


def test_performance_metrics_not_an_object_is_kept_and_reported() -> None:
    result = run([model(performance_metrics=[0.9, "x"])])
    row = result.snapshots.to_pylist()[0]
    assert row["extra_json"] == '{"performance_metrics":[0.9,"x"]}'
    assert issues(row) == ["performance_metrics: not an object (list), kept in extra_json"]
    assert metrics(result) == [("m-1", "performance_metrics.0", 0.9)]


def test_new_numeric_key_under_evaluation_data_reaches_model_metrics() -> None:
    result = run(
        [
            model(
                evaluation_data={
                    "evaluation_id": "e-1",
                    "calibration": {"ece": 0.03, "bins": [0.1, 0.2]},
                    "metrics": {"f1": 0.81, "label": "good", "passed": True, "score_text": "0.5"},
                }
            )
        ]
    )
    assert metrics(result) == [
        ("m-1", "evaluation_data.calibration.bins.0", 0.1),
        ("m-1", "evaluation_data.calibration.bins.1", 0.2),
        ("m-1", "evaluation_data.calibration.ece", 0.03),
        ("m-1", "evaluation_data.metrics.f1", 0.81),
    ]
    assert result.snapshots.to_pylist()[0]["quality_issues"] is None


def test_dots_and_backslashes_in_keys_are_escaped_in_metric_paths() -> None:
    result = run([model(evaluation_data={"p.95": 1, "a\\b": {"c": 2}, "p": {"95": 3}})])
    assert [m for _, m, _ in metrics(result)] == [
        "evaluation_data.a\\\\b.c",
        "evaluation_data.p.95",
        "evaluation_data.p\\.95",
    ]  # raw keys sorted


@pytest.mark.parametrize(
    ("value", "kind", "stored"),
    [
        (["a", 1], "list", '["a",1]'),
        ("pending", "string", '"pending"'),
        (3, "number", "3"),
    ],
)
def test_evaluation_data_not_an_object(value: Any, kind: str, stored: str) -> None:
    result = run([model(evaluation_data=value)])
    row = result.snapshots.to_pylist()[0]
    assert all(row[k] is None for k in row if k.startswith("eval_"))
    assert row["evaluation_data_json"] == stored
    assert issues(row) == [f"evaluation_data: not an object ({kind}), kept in evaluation_data_json"]
    assert result.evaluations.num_rows == 0


def test_evaluation_data_null_gives_nulls_without_notes() -> None:
    row = one_row([model(evaluation_data=None)])
    assert row["evaluation_data_json"] is None and row["quality_issues"] is None


def test_evaluation_metrics_not_an_object_is_reported() -> None:
    row = one_row([model(evaluation_data={"metrics": [0.9]})])
    assert issues(row) == ["evaluation_data.metrics: not an object (list)"]


def test_deep_nesting_stops_at_the_limit_and_keeps_the_json() -> None:
    deep: Any = {"leaf": 1.0}
    for _ in range(70):
        deep = {"k": deep}
    result = run([model(evaluation_data={"score": 0.5, "deep": deep})])
    paths = [m for _, m, _ in metrics(result)]
    assert paths == ["evaluation_data.score"]
    row = result.snapshots.to_pylist()[0]
    (note,) = issues(row)
    assert note.endswith(f"nested deeper than {MAX_DEPTH} levels, not in model_metrics")
    assert json.loads(row["evaluation_data_json"])["deep"] == deep


def test_leaves_exactly_at_the_depth_limit_are_kept() -> None:
    # evaluation_data + 62 "k" + "leaf" = 64 segments
    deep: Any = {"leaf": 1.0}
    for _ in range(MAX_DEPTH - 2):
        deep = {"k": deep}
    (path,) = [m for _, m, _ in metrics(run([model(evaluation_data=deep)]))]
    assert len(path.split(".")) == MAX_DEPTH


def test_big_integers_are_not_rounded_into_metrics() -> None:
    result = run([model(evaluation_data={"raw_answers_count": 2**60})])
    row = result.snapshots.to_pylist()[0]
    assert row["eval_raw_answers_count"] == 2**60  # exact in the int64 column
    assert metrics(result) == []
    assert issues(row) == ["evaluation_data.raw_answers_count: integer not exactly representable as a double (1152921504606846976)"]


def test_evaluations_dedupe_by_id_keeping_the_first() -> None:
    same = {"evaluation_id": "e-1", "metrics": {"accuracy": 0.9}}
    result = run(
        [
            model(id="a", evaluation_data=same),
            model(id="b", evaluation_data=same),
            model(id="c", evaluation_data={**same, "status": "READY"}),
            model(id="d", evaluation_data={"evaluation_id": ""}),
        ]
    )
    assert [(e["evaluation_id"], e["model_id"]) for e in result.evaluations.to_pylist()] == [("e-1", "a")]
    notes = [issues(r) for r in result.snapshots.to_pylist()]
    assert notes[:2] == [None, None]
    assert notes[2] == [
        "evaluation_data.evaluation_id: 'e-1' seen earlier in this answer with different content; evaluations keeps the first"
    ]


def test_evaluation_accuracy_falls_back_to_flat_accuracy() -> None:
    result = run([model(evaluation_data={"evaluation_id": "e-1", "accuracy": 0.7})])
    assert result.evaluations.to_pylist()[0]["accuracy"] == 0.7


# --- quarantine --------------------------------------------------------------------------------


def test_unusable_records_are_quarantined_with_position_and_reason() -> None:
    models: list[Any] = [
        model(id="ok-1"),
        "garbage",
        None,
        {"name": "no id"},
        {"id": 5},
        {"id": ""},
        model(id="ok-1", name="again"),
        [1, 2],
        {"id": "bad\x00"},
        model(id="ok-2"),
    ]
    result = run(models)
    assert [r["model_id"] for r in result.snapshots.to_pylist()] == ["ok-1", "ok-2"]
    assert [(r["position"], r["reason"], r["raw_json"]) for r in result.quarantine.to_pylist()] == [
        (1, "record is not an object (string)", '"garbage"'),
        (2, "record is not an object (null)", "null"),
        (3, "missing id", '{"name":"no id"}'),
        (4, "id is not a string (number)", '{"id":5}'),
        (5, "id is an empty string", '{"id":""}'),
        (6, "duplicate id (first seen at position 0)", '{"id":"ok-1","name":"again"}'),
        (7, "record is not an object (list)", "[1,2]"),
        (8, "id contains a NUL character or an unpaired surrogate", '{"id":"bad\\u0000"}'),
    ]
    q = result.quarantine.to_pylist()[0]
    assert (q["account_id"], q["snapshot_at"]) == (ACCOUNT, SNAP)


def test_unserialisable_record_is_quarantined_as_repr() -> None:
    result = run([object.__new__(type("Odd", (), {"__repr__": lambda self: "<odd>"}))])
    assert result.quarantine.to_pylist()[0]["raw_json"] == "<odd>"


# --- tables as a whole -------------------------------------------------------------------------


def test_empty_list_gives_empty_tables_with_declared_schemas() -> None:
    result = run([])
    for spec in (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRICS, schemas.EVALUATIONS, schemas.QUARANTINE):
        table = result.tables()[spec.name]
        assert table.num_rows == 0 and table.schema.equals(spec.schema)
    assert result.coerced_count == 0


def test_schemas_equal_the_declared_ones() -> None:
    result = run(load("aligned_models_nested.json") + ["junk"])
    assert set(result.tables()) == {"model_snapshots", "model_metrics", "model_metric_lists", "evaluations", "quarantined_records"}
    assert result.metric_lists.schema.equals(schemas.MODEL_METRIC_LISTS.schema, check_metadata=True)
    assert result.snapshots.schema.equals(schemas.MODEL_SNAPSHOTS.schema, check_metadata=True)
    assert result.metrics.schema.equals(schemas.MODEL_METRICS.schema, check_metadata=True)
    assert result.evaluations.schema.equals(schemas.EVALUATIONS.schema, check_metadata=True)
    assert result.quarantine.schema.equals(schemas.QUARANTINE.schema, check_metadata=True)


def test_deterministic_and_does_not_touch_its_input() -> None:
    models = (
        load("aligned_models_nested.json")
        + load("aligned_models_before_after.json")
        + [model(id="x", evaluation_data={"a": math.nan}, usage_count="bad")]
    )
    before = json.dumps(models, sort_keys=True)
    first, second = run(models), run(models)
    for name, table in first.tables().items():
        assert table.equals(second.tables()[name]), name
    assert first.coerced_count == second.coerced_count == 2
    assert json.dumps(models, sort_keys=True) == before


def test_primary_keys_are_unique() -> None:
    result = run(load("aligned_models_nested.json") + load("aligned_models_before_after.json"))
    for spec in (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRICS, schemas.EVALUATIONS):
        table = result.tables()[spec.name]
        keys = list(zip(*(table.column(c).to_pylist() for c in spec.primary_key), strict=False))
        assert len(keys) == len(set(keys)), spec.name


# --- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "id",
        "alignment_id",
        "name",
        "created_date",
        "usage_count",
        "downloadable",
        "performance_metrics",
        "evaluation_data",
        "last_used",
        "extra",
    ]
)
records = st.dictionaries(field_names, json_values, max_size=8) | json_values


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=6))
def test_any_input_is_flattened_without_raising_or_losing_records(models: list[Any]) -> None:
    result = run(models)
    assert result.snapshots.num_rows + result.quarantine.num_rows == len(models)
    notes = [json.loads(q) for q in result.snapshots.column("quality_issues").to_pylist() if q]
    assert result.coerced_count == sum(map(len, notes))
    for spec in (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRICS, schemas.EVALUATIONS, schemas.QUARANTINE):
        assert result.tables()[spec.name].schema.equals(spec.schema)
    for text in result.snapshots.column("evaluation_data_json").to_pylist():
        if text is not None:
            json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
    ),
    st.booleans(),
)
def test_arrow_fast_path_agrees_with_the_python_parser(moment: datetime, zulu: bool) -> None:
    text = moment.isoformat()
    if zulu and moment.utcoffset() == timedelta(0):
        text = text.replace("+00:00", "Z")
    fast = one_row([model(last_used=text)])["last_used"]  # every value plain: Arrow parses
    # a naive neighbour sends the whole column through the Python parser
    slow = run([model(id="a", last_used=text), model(id="b", last_used="2024-01-01T00:00:00")]).snapshots.to_pylist()[0]
    expected_us = as_timestamp(text, "x", {})
    assert expected_us is not None
    assert fast == slow["last_used"]
    assert fast == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=expected_us)


def test_mixed_timestamp_column_falls_back_value_by_value() -> None:
    rows = run([model(id="a", last_used="2024-01-15T10:30:00Z"), model(id="b", last_used="2024-01-15T10:30:00")]).snapshots.to_pylist()
    assert [r["last_used"] for r in rows] == [ts("2024-01-15T10:30:00+00:00")] * 2
    assert [r["quality_issues"] for r in rows] == [None, None]
