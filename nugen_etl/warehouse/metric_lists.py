"""model_metrics' long rows -> the warehouse's ``model_metric_lists`` rows, in Arrow (no per-row Python).

The warehouse keeps one row per model snapshot with its metric paths and values as two parallel
lists; ``nugen.model_metrics`` is a view that unnests them back into the long shape. Flattening
writes each snapshot's metrics next to each other, so a snapshot's list is one run of equal
(account_id, snapshot_at, model_id); rows in any other order are sorted first.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nugen_etl.errors import WarehouseError
from nugen_etl.schemas import MODEL_METRIC_LISTS

_KEY = ("account_id", "snapshot_at", "model_id")
_PER_SNAPSHOT = ("snapshot_date", "model_key")  # one value per snapshot, repeated on its long rows


def to_metric_lists(long: pa.Table) -> pa.Table:
    """The ``model_metric_lists`` rows of a batch's model_metrics rows (schema ``MODEL_METRICS``).

    Raises ``WarehouseError`` if a snapshot holds one metric path twice, or its rows disagree on
    ``snapshot_date`` or ``model_key`` (flattening never writes either; a hand-built load might).
    """
    if long.num_rows == 0:
        return MODEL_METRIC_LISTS.schema.empty_table()
    long = long.combine_chunks()
    if long["metric"].null_count:
        raise WarehouseError("a model_metrics row has no metric path")
    mask = _starts_mask(long)
    starts = pc.indices_nonzero(mask)
    if _has_repeated_keys(long, starts):
        long = long.take(pc.sort_indices(long, [(k, "ascending") for k in _KEY]))
        mask = _starts_mask(long)
        starts = pc.indices_nonzero(mask)
    run_of_row = pc.subtract(pc.cumulative_sum(mask), 1)
    heads = long.take(starts)
    for name in _PER_SNAPSHOT:
        if not _same(long[name], heads[name].take(run_of_row)):
            raise WarehouseError(f"model_metrics rows of one model snapshot disagree on {name}")
    repeated = _repeated_metric(long["metric"], run_of_row)
    if repeated is not None:
        row = long.slice(repeated, 1).to_pylist()[0]
        raise WarehouseError(
            f"model_metrics holds the metric {row['metric']!r} twice for model "
            f"{row['model_id']!r} of account {row['account_id']!r} at "
            f"{row['snapshot_at'].isoformat()}"
        )
    offsets = pa.concat_arrays([starts.cast(pa.int32()), pa.array([long.num_rows], pa.int32())])
    columns = {name: heads[name] for name in (*_KEY, *_PER_SNAPSHOT)}
    columns["metric_names"] = pa.ListArray.from_arrays(offsets, long["metric"].combine_chunks())
    columns["metric_values"] = pa.ListArray.from_arrays(offsets, long["value"].combine_chunks())
    return pa.Table.from_arrays([columns[f.name] for f in MODEL_METRIC_LISTS.schema], schema=MODEL_METRIC_LISTS.schema)


def _starts_mask(long: pa.Table) -> pa.Array:
    """True on each row whose key differs from the row before (and on the first row)."""
    n = long.num_rows
    changed = pa.array([True])
    if n > 1:
        differs = None
        for name in _KEY:
            column = long[name].combine_chunks()
            step = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, n - 1)), True)
            differs = step if differs is None else pc.or_(differs, step)
        changed = pa.concat_arrays([changed, differs])
    return changed.cast(pa.int64())


def _has_repeated_keys(long: pa.Table, starts: pa.Array) -> bool:
    heads = long.select(list(_KEY)).take(starts)
    return bool(heads.group_by(list(_KEY), use_threads=False).aggregate([]).num_rows != heads.num_rows)


def _same(values: pa.ChunkedArray, expected: pa.Array) -> bool:
    equal = pc.fill_null(pc.equal(values.combine_chunks(), expected), False)
    both_null = pc.and_(pc.is_null(values.combine_chunks()), pc.is_null(expected))
    return pc.all(pc.or_(equal, both_null)).as_py() is not False


def _repeated_metric(metric: pa.ChunkedArray, run_of_row: pa.Array) -> int | None:
    """The row of a (snapshot, metric) pair seen before, if any."""
    codes = pc.dictionary_encode(metric.combine_chunks()).indices.cast(pa.int64())
    width = pc.max(codes).as_py() + 1
    pairs = pc.add(pc.multiply(run_of_row, width), codes).to_numpy()
    ordered = np.sort(pairs)  # a sort finds a repeat ~10x faster than a hash count of distinct values
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(same) == 0:
        return None
    return int(np.flatnonzero(pairs == ordered[same[0]])[1])
