"""How a live run groups its work: answers flattened several at a time, and a batch of small
per-answer tables staged as one chunk per table, with the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from nugen_etl.pipeline import _gathered
from nugen_etl.records import RawAnswer
from nugen_etl.simulator.state import SimulatorState
from nugen_etl.transform import answer_to_load, loads_of
from nugen_etl.warehouse.staging import MIN_ROWS_PER_CHUNK, _fewer_chunks, stage_batch

SLOT = datetime(2026, 3, 1, 12, tzinfo=UTC)


@given(st.lists(st.lists(st.integers(), max_size=5), max_size=30), st.integers(1, 12))
def test_gathered_keeps_every_answer_in_order_in_groups_of_at_least_the_size(groups: list[list[int]], size: int) -> None:
    out = list(_gathered(groups, size))
    assert [x for group in out for x in group] == [x for group in groups for x in group]
    assert all(len(group) >= size for group in out[:-1])
    assert all(out)  # no empty group is handed on


def _raws(accounts: int, models: int) -> list[RawAnswer]:
    state = SimulatorState(seed=5, accounts=accounts + 1, models=models, start=SLOT - timedelta(days=3))
    return [
        RawAnswer(
            account_id=a,
            snapshot_at=SLOT,
            fetched_at=SLOT + timedelta(seconds=2),
            http_status=200,
            body=state.body_at(a, SLOT),
            headers={"content-type": "application/json"},
        )
        for a in state.account_ids[:accounts]
    ]


def test_a_batch_of_small_answers_is_staged_as_one_chunk_with_the_same_rows() -> None:
    raws = _raws(12, 3)  # 12 answers of 3 models: far below MIN_ROWS_PER_CHUNK rows a chunk
    one_by_one = stage_batch([answer_to_load(raw) for raw in raws]).tables
    together = stage_batch(loads_of(raws)).tables
    snapshots = one_by_one["stg_model_snapshots"]
    assert 12 * 3 < MIN_ROWS_PER_CHUNK
    assert snapshots.num_rows == 12 * 3
    for name, table in one_by_one.items():
        assert all(column.num_chunks <= 1 for column in table.columns), name
        assert table.equals(together[name]), name


def test_chunks_of_at_least_the_minimum_on_average_are_staged_as_they_are() -> None:
    row = answer_to_load(_raws(1, 1)[0]).tables["model_snapshots"]
    big = pa.concat_tables([row] * MIN_ROWS_PER_CHUNK).combine_chunks()  # one chunk of 2,048 rows
    two = _fewer_chunks(pa.concat_tables([big, big]))
    assert two.column(0).num_chunks == 2  # 2,048 rows a chunk on average: not copied
    small = pa.concat_tables([big.slice(0, 10)] * 3)
    assert _fewer_chunks(small).column(0).num_chunks == 1
    assert _fewer_chunks(small).equals(small)
