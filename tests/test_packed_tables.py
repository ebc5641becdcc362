"""Slot tables packed into one table per name (a replayed unit): read per slot as slices, gathered by a
batch as few slices, with the same rows either way."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nugen_etl.records import PackedTables, gather, table_rows


def packed_from(row_counts: list[int], tag: str) -> tuple[PackedTables, list[dict[str, pa.Table]]]:
    """A PackedTables of slots with ``row_counts`` rows each, and the same slots as plain tables."""
    plain, start = [], 0
    for count in row_counts:
        plain.append({"t": pa.table({"v": pa.array([f"{tag}{start + i}" for i in range(count)], pa.string())})})
        start += count
    whole = pa.concat_tables([p["t"] for p in plain]).combine_chunks()
    offsets = [0, *itertools.accumulate(row_counts)]
    return PackedTables({"t": whole}, {"t": offsets}), plain


def rows(parts: list[pa.Table]) -> list[str]:
    return [v for part in parts for v in part["v"].to_pylist()]


def test_a_slot_reads_its_own_rows() -> None:
    packed, plain = packed_from([2, 0, 3], "a")
    for i, expected in enumerate(plain):
        slot = packed.slot(i)
        assert "t" in slot and "u" not in slot and list(slot) == ["t"] and len(slot) == 1
        assert slot["t"].equals(expected["t"]) and table_rows(slot, "t") == expected["t"].num_rows
        assert table_rows(slot, "u") == 0 and table_rows(expected, "u") == 0


@given(st.lists(st.tuples(st.sampled_from("abp"), st.integers(0, 4)), max_size=12), st.randoms())
def test_gather_gives_the_rows_in_order_with_consecutive_packed_slots_as_one_slice(spec, rng) -> None:
    """Any mix of two packs' slots (in or out of order) and plain tables gathers to the same rows as
    the plain tables concatenated, in no more parts than there are runs of consecutive packed slots."""
    packs = {tag: packed_from([rng.randint(0, 3) for _ in range(6)], tag) for tag in "ab"}
    slots, expected = [], []
    for kind, n in spec:
        if kind == "p":
            table = pa.table({"v": pa.array([f"p{n}-{i}" for i in range(n)], pa.string())})
            slots.append({"t": table})
            expected.append(table)
        else:
            packed, plain = packs[kind]
            slots.append(packed.slot(n))
            expected.append(plain[n]["t"])
    parts = gather(slots, "t")
    assert rows(parts) == rows(expected)
    assert all(part.num_rows >= 0 for part in parts)
    runs = sum(
        1
        for i, s in enumerate(slots)
        if not (
            i
            and hasattr(s, "packed")
            and hasattr(slots[i - 1], "packed")
            and slots[i - 1].packed is s.packed
            and slots[i - 1].index + 1 == s.index
        )
    )
    assert len(parts) <= runs


def test_gather_skips_slots_without_the_table() -> None:
    packed, plain = packed_from([1, 2], "a")
    assert rows(gather([packed.slot(0), {}, packed.slot(1)], "t")) == rows([plain[0]["t"], plain[1]["t"]])
    with pytest.raises(KeyError):
        packed.slot(0)["u"]
