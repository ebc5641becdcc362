"""``flatten_answers`` (many answers in one call, as a replay does) gives, answer by answer, exactly the
tables ``flatten_models`` gives for that answer alone: same values, schemas (with their metadata),
``coerced_count``, and the same rows in the shape the lake writes them. Quarantine positions,
duplicate ids and the evaluations dedupe stay per answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nugen_etl.flatten import Flattened, flatten_answers, flatten_models
from nugen_etl.schemas import MODEL_METRICS, MODEL_SNAPSHOTS
from nugen_etl.simulator import SimulatorState
from tests.test_flatten import records
from tests.test_flatten_properties import payloads
from tests.test_hostile_input import RECORDS as HOSTILE_RECORDS

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def fixture(name: str) -> list[Any]:
    return json.loads((FIXTURES / name).read_text())["domain_aligned_models"]


def hostile() -> list[Any]:
    return json.loads("[" + ", ".join(HOSTILE_RECORDS) + "]")


def assert_same(batch: list[Flattened], answers: list[tuple[list[Any], str, datetime, datetime]]) -> None:
    assert len(batch) == len(answers)
    for got, (models, account_id, snapshot_at, fetched_at) in zip(batch, answers, strict=False):
        want = flatten_models(models, account_id=account_id, snapshot_at=snapshot_at, fetched_at=fetched_at)
        assert got.coerced_count == want.coerced_count
        for name, table in want.tables().items():
            other = got.tables()[name]
            assert other.schema.equals(table.schema, check_metadata=True), name
            assert other.equals(table), name
        for spec in (MODEL_SNAPSHOTS, MODEL_METRICS):  # what the Delta tables receive: the declared schema
            a, b = (t.select(spec.schema.names).cast(spec.schema) for t in (got.tables()[spec.name], want.tables()[spec.name]))
            assert a.schema.equals(b.schema, check_metadata=True) and a.equals(b), spec.name


def test_simulator_account_days_match_slot_by_slot() -> None:
    state = SimulatorState(7, 4, models=20, start=T0)
    answers = []
    for account_id in state.account_ids:
        for hour in range(24):
            slot = T0 + timedelta(hours=hour)
            fetched = slot + timedelta(seconds=5)
            body = json.loads(state.body_at(account_id, fetched))
            answers.append((body.get("domain_aligned_models", []), account_id, slot, fetched))
    assert_same(flatten_answers(answers), answers)


def test_hostile_and_fixture_answers_keep_per_answer_semantics() -> None:
    nested, before_after = fixture("aligned_models_nested.json"), fixture("aligned_models_before_after.json")
    evals = [{"id": f"m{i}", "evaluation_data": {"evaluation_id": "e1", "accuracy": i / 10}} for i in range(3)]
    answers = [
        (hostile(), "acct-a", T0, T0 + timedelta(seconds=1)),
        ([], "acct-a", T0 + timedelta(hours=1), T0 + timedelta(hours=1, seconds=1)),
        (nested + before_after, "acct-a", T0 + timedelta(hours=2), T0 + timedelta(hours=2, seconds=3)),
        (hostile(), "acct-b", T0, T0 + timedelta(seconds=2)),  # the same duplicate ids again
        (evals, "acct-b", T0 + timedelta(hours=1), T0 + timedelta(hours=1)),
        (evals[::-1], "acct-b", T0 + timedelta(hours=2), T0 + timedelta(hours=2)),  # dedupe per answer
        (["junk", None], "acct-c", T0 + timedelta(days=1), T0 + timedelta(days=1)),
        (nested, "acct-c", T0 + timedelta(days=2), T0 + timedelta(days=2)),
    ]
    batch = flatten_answers(answers)
    assert_same(batch, answers)
    assert batch[0].quarantine.num_rows == batch[3].quarantine.num_rows > 0
    assert batch[4].evaluations.num_rows == batch[5].evaluations.num_rows == 1
    assert batch[1].snapshots.num_rows == 0 and batch[6].quarantine.num_rows == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(records, max_size=5) | payloads(), min_size=1, max_size=5))
def test_any_answers_match_slot_by_slot(lists: list[list[Any]]) -> None:
    answers = [(models, f"acct-{i % 2}", T0 + timedelta(hours=i), T0 + timedelta(hours=i, seconds=i)) for i, models in enumerate(lists)]
    assert_same(flatten_answers(answers), answers)
