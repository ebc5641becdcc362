"""Property-based flattening on payloads that are valid under the vendor's schema.

``tests/test_flatten.py`` throws arbitrary JSON at ``flatten_models`` (no crash, no record lost).
Here hypothesis builds records that follow the documented schema -- both ``performance_metrics``
shapes, flat / nested / null ``evaluation_data`` with arbitrary extra keys, nesting, nulls and
unicode, unknown top-level fields -- and checks that flattening is lossless leaf by leaf (every
value comes back from a typed column, ``model_metrics`` or the kept JSON), reports nothing for
valid input, survives a round trip through the lake's Delta tables and is deterministic.
"""

from __future__ import annotations

import copy
import json
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nugen_etl.flatten import flatten_models
from nugen_etl.records import AccountRun, Outcome, SlotLoad
from nugen_etl.schemas import MODEL_METRICS, MODEL_SNAPSHOTS
from nugen_etl.sinks.lake import Lake, LakeLocation
from tests.flatten_paths import as_chosen, flatten_path  # noqa: F401 - flatten_path is the fixture

SNAP = datetime(2024, 3, 1, 12, tzinfo=UTC)
FETCHED = SNAP + timedelta(seconds=3)

TOP_TEXT = ("name", "base_model", "alignment_project", "status", "deployment_status", "endpoint", "creator")
TOP_BOOL = ("downloadable", "conversation_saving_enabled")
TOP_TS = ("created_date", "last_used")
TOP_KEYS = {"id", "alignment_id", *TOP_TEXT, *TOP_BOOL, *TOP_TS, "usage_count", "performance_metrics", "evaluation_data"}
PM_UNIT = ("accuracy", "uncertainty", "accuracy_before", "accuracy_after", "uncertainty_before", "uncertainty_after")
PM_COUNT = ("domain_violations", "domain_violations_before", "domain_violations_after")
EVAL_KEYS = {
    "evaluation_id",
    "status",
    "method",
    "created_at",
    "completed_at",
    "raw_answers_count",
    "total_questions",
    "accuracy",
    "metrics",
}
METRIC_KEYS = {"accuracy", "uncertainty", "domain_violations", "overall_score"}

# --- strategies ------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
keys = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6) | st.sampled_from(
    ["a.b", "x\\y", "p.95", ".", "\\", "ключ", "指标", "🙂"]
)
numbers = st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
timestamps = st.builds(lambda m, z: m.isoformat().replace("+00:00", "Z") if z else m.isoformat(), moments, st.booleans())
unit = st.floats(0, 1) | st.sampled_from([0, 1])
counts = st.integers(0, 10**6)


def extras(known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(keys.filter(lambda k: k not in known), json_values, max_size=3)


plain_pm = st.fixed_dictionaries(
    {},
    optional={
        "accuracy": unit,
        "uncertainty": unit,
        "domain_violations": counts,
        "average_response_time": st.floats(0, 1e4) | st.integers(0, 100),
    },
)
before_after_pm = st.fixed_dictionaries(
    {},
    optional={
        **{k: unit for k in ("accuracy_before", "accuracy_after", "uncertainty_before", "uncertainty_after")},
        "domain_violations_before": counts,
        "domain_violations_after": counts,
    },
)
performance = st.builds(
    lambda pm, more: {**pm, **more}, plain_pm | before_after_pm, extras(set(PM_UNIT) | set(PM_COUNT) | {"average_response_time"})
)

metrics = st.builds(
    lambda m, more: {**m, **more},
    st.fixed_dictionaries({}, optional={"accuracy": unit, "uncertainty": unit, "domain_violations": counts, "overall_score": unit}),
    extras(METRIC_KEYS),
)
flat_eval = st.builds(
    lambda e, more: {**e, **more}, st.fixed_dictionaries({}, optional={"accuracy": unit, "total_questions": counts}), extras(EVAL_KEYS)
)
nested_eval = st.builds(
    lambda e, more: {**e, **more},
    st.fixed_dictionaries(
        {},
        optional={
            "evaluation_id": text.filter(bool),
            "status": text,
            "method": text,
            "created_at": timestamps,
            "completed_at": timestamps,
            "raw_answers_count": counts,
            "metrics": metrics | st.none(),
        },
    ),
    extras(EVAL_KEYS),
)
evaluation = st.none() | flat_eval | nested_eval | extras(EVAL_KEYS)

record = st.fixed_dictionaries(
    {
        "name": text,
        "base_model": text,
        "alignment_project": text,
        "created_date": timestamps,
        "status": st.sampled_from(["DEPLOYED", "READY", "DEPLOYING", "UNDEPLOYING", "FAILED", "UNDEPLOYED", "EVALUATED"]) | text,
        "deployment_status": st.none() | st.sampled_from(["DEPLOYED", "READY", "PROCESSING"]) | text,
        "endpoint": text,
        "creator": text,
        "usage_count": st.integers(0, 2**62),
        "performance_metrics": performance,
        "downloadable": st.booleans(),
    },
    optional={
        "alignment_id": st.none() | text,
        "last_used": st.none() | timestamps,
        "evaluation_data": evaluation,
        "conversation_saving_enabled": st.booleans(),
    },
)
records = st.builds(lambda rec, more: {**rec, **more}, record, extras(TOP_KEYS))


@st.composite
def payloads(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records with unique ids (unicode allowed); evaluation ids unique across the answer."""
    models = draw(st.lists(records, max_size=5))
    suffixes = draw(st.lists(text, min_size=len(models), max_size=len(models)))
    for n, (rec, suffix) in enumerate(zip(models, suffixes, strict=False)):
        rec["id"] = f"alignment-{n}-{suffix}"
        ev = rec.get("evaluation_data")
        if isinstance(ev, dict) and "evaluation_id" in ev:
            ev["evaluation_id"] = f"eval-{n}-{ev['evaluation_id']}"
    return models


# --- an independent reading of metric paths ---------------------------------------------------


def split_path(path: str) -> list[str]:
    """Undo the documented escaping: ``\\.`` is a dot inside a key, ``\\\\`` a backslash."""
    parts, current, chars = [], [], iter(path)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars))
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def lookup(rec: dict[str, Any], parts: list[str]) -> Any:
    node: Any = rec
    for part in parts:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def numeric_leaves(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, dict):
        return sum(numeric_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(numeric_leaves(v) for v in value)
    return 0


def as_ts(textual: str | None) -> datetime | None:
    return None if textual is None else datetime.fromisoformat(textual.replace("Z", "+00:00")).astimezone(UTC)


def same_number(got: Any, want: Any) -> bool:
    return got == want and (got is None) == (want is None)


# --- the properties ---------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("flatten_path")  # every test runs on both flatten paths


def flatten(models: list[Any]):
    return flatten_models(as_chosen(models), account_id="acct-1", snapshot_at=SNAP, fetched_at=FETCHED)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_valid_payloads_flatten_losslessly(models: list[dict[str, Any]]) -> None:
    original = copy.deepcopy(models)
    result = flatten(models)
    assert models == original, "flattening must not touch its input"
    assert result.quarantine.num_rows == 0 and result.snapshots.num_rows == len(models)
    assert result.coerced_count == 0, "valid input has nothing to report"
    rows = result.snapshots.to_pylist()
    for rec, row in zip(models, rows, strict=False):
        assert row["quality_issues"] is None
        assert row["model_id"] == rec["id"]
        for name in ("alignment_id", *TOP_TEXT):
            assert row[name] == rec.get(name), name
        for name in TOP_BOOL:
            assert row[name] is rec.get(name), name
        for name in TOP_TS:
            assert row[name] == as_ts(rec.get(name)), name
        assert row["usage_count"] == rec["usage_count"]
        assert row["model_key"] == (rec.get("alignment_id") or rec["id"])

        pm = rec["performance_metrics"]
        for key in (*PM_UNIT, *PM_COUNT, "average_response_time"):
            assert same_number(row["pm_" + key], pm.get(key)), key
        ev = rec.get("evaluation_data")
        assert (None if row["evaluation_data_json"] is None else json.loads(row["evaluation_data_json"])) == ev
        ev = ev or {}
        em = ev.get("metrics") or {}
        assert row["eval_id"] == ev.get("evaluation_id") and row["eval_method"] == ev.get("method")
        assert row["eval_created_at"] == as_ts(ev.get("created_at"))
        assert row["eval_raw_answers_count"] == ev.get("raw_answers_count")
        assert row["eval_total_questions"] == ev.get("total_questions")
        for key in METRIC_KEYS:
            assert same_number(row["eval_metrics_" + key], em.get(key)), key
        first = next(
            (v for v in (pm.get("accuracy"), pm.get("accuracy_after"), em.get("accuracy"), ev.get("accuracy")) if v is not None), None
        )
        assert same_number(row["accuracy"], first)

        unknown = {k: v for k, v in rec.items() if k not in TOP_KEYS}
        unknown_pm = {k: v for k, v in pm.items() if k not in (*PM_UNIT, *PM_COUNT, "average_response_time")}
        if unknown_pm:
            unknown["performance_metrics"] = unknown_pm
        assert (json.loads(row["extra_json"]) if row["extra_json"] else {}) == unknown

    # model_metrics: exactly one row per numeric leaf, and each path leads back to its value
    per_model: dict[str, int] = {}
    by_id = {rec["id"]: rec for rec in models}
    for m in result.metrics.to_pylist():
        parts = split_path(m["metric"])
        assert parts[0] in ("performance_metrics", "evaluation_data")
        leaf = lookup(by_id[m["model_id"]], parts)
        assert not isinstance(leaf, bool) and float(leaf) == m["value"]
        per_model[m["model_id"]] = per_model.get(m["model_id"], 0) + 1
    for rec in models:
        expected = numeric_leaves(rec["performance_metrics"]) + numeric_leaves(rec.get("evaluation_data"))
        assert per_model.get(rec["id"], 0) == expected


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_valid_payloads_survive_the_lake(models: list[dict[str, Any]]) -> None:
    """The typed tables come back from the Delta tables (delta-rs' own Parquet writer) unchanged:
    declared schema with its metadata, every value. Fewer examples than above: each is a real commit."""
    result = flatten(models)
    run = AccountRun("acct-1", SNAP, Outcome.OK, http_status=200, model_count=result.snapshots.num_rows, fetched_at=FETCHED)
    with tempfile.TemporaryDirectory() as folder, Lake(LakeLocation(folder)) as lake:
        lake.write([SlotLoad(run, result.tables())])
        for spec, table in ((MODEL_SNAPSHOTS, result.snapshots), (MODEL_METRICS, result.metrics)):
            back = lake.read(spec).sort_by([(c, "ascending") for c in spec.primary_key])
            want = table.sort_by([(c, "ascending") for c in spec.primary_key])
            assert back.schema.equals(spec.schema, check_metadata=True), spec.name
            assert back.equals(want), spec.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_flattening_is_deterministic(models: list[dict[str, Any]]) -> None:
    first, again, from_copy = flatten(models), flatten(models), flatten(copy.deepcopy(models))
    reparsed = flatten(json.loads(json.dumps(models)))
    for other in (again, from_copy, reparsed):
        for name, table in first.tables().items():
            assert table.equals(other.tables()[name]), name
        assert first.coerced_count == other.coerced_count


def test_split_path_reads_the_documented_escaping() -> None:
    assert split_path(r"evaluation_data.metrics.p\.95.a\\b.0") == ["evaluation_data", "metrics", "p.95", "a\\b", "0"]
