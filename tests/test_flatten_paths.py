"""The decoded path (``model_decoder``'s typed records, a column at a time) and the general path
(``json.loads`` dicts, value by value) give byte-identical tables for any body.

Hypothesis builds bodies close to the documented shape, where the two paths meet: every documented
field, each optional, mostly of its documented JSON type but sometimes null, of another type, out
of range, huge, non-finite, a float JSON writes with an exponent, text with NUL or unpaired
surrogates, odd timestamps, duplicate or empty ids, unknown keys, records that are not objects --
in batches of several answers, as a replay flattens them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nugen_etl.classify import classify_answer
from nugen_etl.flatten import flatten_answers
from nugen_etl.model_decoder import DecodedModels, decode_models
from nugen_etl.records import Outcome, RawAnswer
from nugen_etl.simulator import SimulatorState
from tests.flatten_paths import assert_identical, body_of
from tests.test_hostile_input import RECORDS as HOSTILE_RECORDS

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2024, 3, 1, tzinfo=UTC)

# --- strategies: the documented shape, bent ----------------------------------------------------

odd_text = st.sampled_from(["", "a\x00b", "x\ud800y", "ключ", "🙂", 'q"\\\n\t', "\u2028", "0.92", "150", "true"])
texts = st.text(max_size=8) | odd_text
odd_numbers = st.sampled_from(
    [
        1e-7,
        -2.5e-5,
        1e-4,
        9.99e-5,
        1e16,
        -1e16,
        9.9e15,
        1e20,
        2**53,
        2**53 + 1,
        2**63,
        -(2**63) - 1,
        2**70,
        0,
        -0.0,
        1.5,
        -3,
        float("nan"),
        float("inf"),
    ]
)
floats = st.one_of(
    st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), odd_numbers
)
ints = st.one_of(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**53, 2**53 + 1, 2**63, -(2**63) - 1]),
)
wrong = st.booleans() | texts | st.lists(st.integers(0, 3), max_size=2) | st.just({"k": 1}) | st.floats(0, 5)
timestamps = st.sampled_from(
    [
        "2024-03-01T12:00:00Z",
        "2024-03-01T12:00:00.123456+05:30",
        "2024-03-01T12:00:00",
        "2024-03-01T12:00:00.123456789Z",
        "2024-03-01 12:00:00+00:00",
        "2024-03-01",
        "yesterday",
        "2024-13-01T00:00:00Z",
    ]
) | st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda m: m.isoformat() + "Z")


def shaped(bent: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Records with the documented keys. Not ``bent``: every value of its documented JSON type or null
    (odd values included: exponents, huge ints, text with NUL). ``bent``: sometimes another type, and
    sometimes an unknown key."""

    def value(typed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(typed, typed, typed, st.none(), wrong) if bent else st.one_of(typed, typed, st.none())

    def optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries({}, optional=fields)

    eval_metrics = optional(
        {"accuracy": value(floats), "uncertainty": value(floats), "domain_violations": value(ints), "overall_score": value(floats)}
    )
    evaluation = optional(
        {
            "evaluation_id": value(st.sampled_from(["e-1", "e-2", ""]) | texts),
            "status": value(texts),
            "method": value(texts),
            "created_at": value(timestamps),
            "completed_at": value(timestamps),
            "raw_answers_count": value(ints),
            "total_questions": value(ints),
            "accuracy": value(floats),
            "metrics": value(eval_metrics),
        }
    )
    performance = optional(
        {
            **{
                k: value(floats)
                for k in (
                    "accuracy",
                    "uncertainty",
                    "average_response_time",
                    "accuracy_before",
                    "accuracy_after",
                    "uncertainty_before",
                    "uncertainty_after",
                )
            },
            **{k: value(ints) for k in ("domain_violations", "domain_violations_before", "domain_violations_after")},
        }
    )
    return st.builds(
        lambda known, extra: {**known, **extra},
        st.fixed_dictionaries(
            {"id": st.sampled_from(["m-1", "m-2", "m-3"]) | value(texts)},
            optional={
                **{
                    k: value(texts)
                    for k in (
                        "alignment_id",
                        "name",
                        "base_model",
                        "alignment_project",
                        "status",
                        "deployment_status",
                        "endpoint",
                        "creator",
                    )
                },
                "created_date": value(timestamps),
                "last_used": value(timestamps),
                "usage_count": value(ints),
                "downloadable": value(st.booleans()),
                "conversation_saving_enabled": value(st.booleans()),
                "performance_metrics": value(performance),
                "evaluation_data": value(evaluation),
            },
        ),
        st.one_of(st.just({}), st.just({}), st.just({"unknown_field": 1})) if bent else st.just({}),
    )


def numbered(records: list[Any]) -> list[Any]:
    """The records with distinct ids, as a well-behaved answer has them."""
    return [{**r, "id": f"m-{i}"} if isinstance(r, dict) else r for i, r in enumerate(records)]


clean, bent = shaped(False), shaped(True)
answer = st.lists(st.one_of(clean, clean, bent, st.integers(), st.just(None)), max_size=5)
answer = answer | answer.map(numbered)


def raw(body: bytes, i: int) -> RawAnswer:
    slot = T0 + timedelta(hours=i)
    return RawAnswer(account_id=f"acct-{i % 2}", snapshot_at=slot, fetched_at=slot + timedelta(seconds=3), http_status=200, body=body)


def assert_paths_agree(bodies: list[bytes]) -> int:
    """Flatten ``bodies`` as one batch both ways; compare answer by answer. Returns how many decoded."""
    raws = [raw(body, i) for i, body in enumerate(bodies)]
    general = [(json.loads(r.body)["domain_aligned_models"], r.account_id, r.snapshot_at, r.fetched_at) for r in raws]
    classified = [classify_answer(r) for r in raws]
    assert all(c.outcome in (Outcome.OK, Outcome.EMPTY) for c in classified)
    received = [(c.models, r.account_id, r.snapshot_at, r.fetched_at) for c, r in zip(classified, raws, strict=False)]
    for got, want in zip(flatten_answers(received), flatten_answers(general), strict=False):
        assert_identical(got, want)
    return sum(isinstance(c.models, DecodedModels) for c in classified)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(answer, min_size=1, max_size=4))
def test_both_paths_give_identical_tables(answers: list[list[Any]]) -> None:
    bodies = [body_of(models) for models in answers]
    assert all(body is not None for body in bodies)
    decoded = assert_paths_agree(bodies)  # type: ignore[arg-type]
    event(f"{decoded} of {len(bodies)} answers decoded")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(clean, max_size=4).map(numbered) | st.lists(clean, max_size=4), min_size=1, max_size=3))
def test_both_paths_agree_on_records_of_the_documented_types(answers: list[list[dict[str, Any]]]) -> None:
    bodies = [body_of(models) for models in answers]
    assert_paths_agree(bodies)  # type: ignore[arg-type]


def test_the_simulator_and_documented_fixtures_take_the_decoded_path() -> None:
    state = SimulatorState(3, 3, models=20, start=T0)
    bodies = [state.body_at(a, T0 + timedelta(hours=h, minutes=3)) for a in state.account_ids for h in range(3)]
    bodies += [(FIXTURES / name).read_bytes() for name in ("aligned_models_nested.json", "aligned_models_before_after.json")]
    assert all(decode_models(body) is not None for body in bodies)
    assert assert_paths_agree(bodies) == len(bodies)


@pytest.mark.parametrize("record", HOSTILE_RECORDS)
def test_hostile_records_agree_with_documented_ones_beside_them(record: str) -> None:
    documented = (FIXTURES / "aligned_models_nested.json").read_bytes()
    hostile = ('{"domain_aligned_models": [' + record + "]}").encode()
    assert_paths_agree([documented, hostile, documented])


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"domain_aligned_models": [{"id": "m", "usage_count": "150"}]}', "a number as text"),
        (b'{"domain_aligned_models": [{"id": "m", "name": "a\\u0000b"}]}', "an escaped NUL"),
        (b'{"domain_aligned_models": [{"id": "m", "name": "x\\ud800"}]}', "an unpaired surrogate"),
        (b'{"domain_aligned_models": [{"id": "m", "usage_count": NaN}]}', "NaN"),
        (b'{"domain_aligned_models": [{"id": "m", "surprise": 1}]}', "an unknown key"),
        (b'{"domain_aligned_models": [{"id": "m", "performance_metrics": {"p95": 1}}]}', "an unknown metric"),
        (b'{"domain_aligned_models": [3]}', "a record that is not an object"),
        (b'{"domain_aligned_models": [{"name": "no id"}]}', "no id"),
        (b'\xef\xbb\xbf{"domain_aligned_models": []}', "a byte order mark"),
    ],
)
def test_bodies_off_the_documented_shape_take_the_general_path(body: bytes, why: str) -> None:
    assert decode_models(body) is None, why


CASES = {  # the decoded path's own checks: each sends its batch to the general path, which notes the value
    "a float JSON writes with an exponent": {"evaluation_data": {"accuracy": 1e-7, "metrics": {"overall_score": 2.5e20}}},
    "an int a double cannot hold, as a metric": {"performance_metrics": {"domain_violations": 2**53 + 1}},
    "an int beyond int64": {"usage_count": 2**63, "performance_metrics": {"domain_violations_after": -(2**63) - 1}},
    "an int beyond a double in a float column": {"performance_metrics": {"accuracy": 2**60}},
    "an empty id": {"id": ""},
}


@pytest.mark.parametrize("case", CASES)
def test_each_check_of_the_decoded_path_keeps_the_tables_identical(case: str) -> None:
    plain = {"id": "m-0", "name": "n", "performance_metrics": {"accuracy": 0.5}}
    bodies = [body_of([plain, {"id": "m-1", **CASES[case]}]), body_of([plain]), body_of([plain, plain])]
    assert all(decode_models(body) is not None for body in bodies)  # type: ignore[arg-type]
    assert assert_paths_agree(bodies) == len(bodies)  # type: ignore[arg-type]
