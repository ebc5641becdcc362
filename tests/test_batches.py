"""``whole_or_each``: a batch's work done at once, redone item by item where the batch fails, so a
failure costs only the item it concerns. Live flattening and the replay both go through it; their own
tests (tests/test_replay_groups.py) make one answer fail inside a group."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from nugen_etl.batches import whole_or_each


def _squares(items: Sequence[int]) -> list[int]:
    if 13 in items:
        raise RuntimeError("unlucky")
    return [i * i for i in items]


def _square_or_minus_one(item: int) -> int:
    return -1 if item == 13 else item * item


def test_the_whole_batch_at_once_when_it_succeeds() -> None:
    calls: list[int] = []

    def each(item: int) -> int:
        calls.append(item)
        return item

    assert whole_or_each([1, 2, 3], _squares, each, what="squaring") == [1, 4, 9]
    assert calls == []


def test_a_failing_batch_is_redone_item_by_item(caplog: pytest.LogCaptureFixture) -> None:
    assert whole_or_each([2, 13, 4], _squares, _square_or_minus_one, what="squaring") == [4, -1, 16]
    assert "squaring of 3 items failed as a batch (RuntimeError)" in caplog.text
    assert "unlucky" not in caplog.text  # the error's text may carry data; the per-item path reports it


def test_a_batch_giving_another_number_of_results_is_redone() -> None:
    assert whole_or_each([1, 2, 3], lambda items: [0], lambda i: i + 10, what="x") == [11, 12, 13]


def test_one_item_goes_straight_to_the_item_path() -> None:
    def whole(items: Sequence[int]) -> list[int]:
        raise AssertionError("not called for a single item")

    assert whole_or_each([5], whole, lambda i: i * 2, what="x") == [10]
    assert whole_or_each([], whole, lambda i: i * 2, what="x") == []
