"""Arrow tables as PostgreSQL binary COPY data, built with Arrow and numpy kernels (no Python object per value).

The binary format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4) is, after
a fixed header, per row a 16-bit field count and per field a 32-bit length (-1 for NULL) and the
value in the type's binary send form, all big-endian. Each column is first turned into one binary
value per row holding its whole field (length word included); the fields are then interleaved
into rows with one ``take``. The server reads the values as they are: no text parsing of
timestamps, doubles or array literals, and non-finite doubles need no special path.

Supported Arrow types: string, int64, int32, float64, bool, date32, timestamp[us, tz], and lists of
string or float64 (one-dimensional arrays, lower bound 1).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400_000_000
# Element type OIDs written into array values.
_OIDS = {pa.string(): 25, pa.float64(): 701}


def copy_chunks(table: pa.Table, max_rows: int) -> Iterator[bytes | memoryview]:
    """The binary COPY stream for ``table``: the header, then the rows ``max_rows`` at a time, then the trailer."""
    yield HEADER
    count = len(table.schema).to_bytes(2, "big")
    for batch in table.to_batches(max_chunksize=max_rows):
        if batch.num_rows:
            yield encode_rows(batch, count)
    yield TRAILER


def encode_rows(batch: pa.RecordBatch, count: bytes | None = None) -> memoryview:
    """The rows of ``batch`` in binary COPY form (no header or trailer)."""
    n = batch.num_rows
    count = count if count is not None else batch.num_columns.to_bytes(2, "big")
    fields = [pa.FixedSizeBinaryArray.from_buffers(pa.binary(2), n, [None, pa.py_buffer(count * n)]).cast(pa.binary())]
    fields += [field_values(column) for column in batch.columns]
    width = len(fields)
    # Row-major order over (row, field): the i-th output value is field i % width of row i // width.
    order = (np.arange(width, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel()
    joined = pa.concat_arrays(fields).take(pa.array(order))
    offsets, data = joined.buffers()[1:3]
    first, last = np.frombuffer(offsets, np.int32)[[joined.offset, joined.offset + len(joined)]]
    return memoryview(data)[first:last]


def field_values(column: pa.Array) -> pa.Array:
    """One binary value per row: the field's 32-bit length (or -1 for NULL) followed by its bytes."""
    type_ = column.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_binary(type_):
        return _with_length(column.cast(pa.binary()))
    if pa.types.is_list(type_):
        return _arrays(column)
    return _fixed(column)


def _fixed(column: pa.Array) -> pa.Array:
    """Fixed-width values: length word and big-endian bytes, NULL as -1 alone."""
    type_ = column.type
    n = len(column)
    if pa.types.is_timestamp(type_):
        if type_.unit != "us":
            column = column.cast(pa.timestamp("us", type_.tz))
        values = column.view(pa.int64()).fill_null(0).to_numpy() - _PG_EPOCH_US
        raw, width = values.astype(">i8"), 8
    elif pa.types.is_date32(type_):
        raw, width = (column.view(pa.int32()).fill_null(0).to_numpy() - _PG_EPOCH_DAYS).astype(">i4"), 4
    elif pa.types.is_int64(type_):
        raw, width = column.fill_null(0).to_numpy().astype(">i8"), 8
    elif pa.types.is_int32(type_):
        raw, width = column.fill_null(0).to_numpy().astype(">i4"), 4
    elif pa.types.is_float64(type_):
        raw, width = column.fill_null(0.0).to_numpy().astype(">f8"), 8
    elif pa.types.is_boolean(type_):
        raw, width = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8), 1
    else:
        raise TypeError(f"no binary COPY form for Arrow type {type_}")
    cells = np.empty((n, 4 + width), np.uint8)
    cells[:, :4] = np.frombuffer(width.to_bytes(4, "big"), np.uint8)
    cells[:, 4:] = raw.view(np.uint8).reshape(n, width)
    values = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 + width), n, [None, pa.py_buffer(cells)])
    values = values.cast(pa.binary())
    return pc.if_else(column.is_null(), pa.scalar(_NULL, pa.binary()), values) if column.null_count else values


def _with_length(values: pa.Array) -> pa.Array:
    """Each binary value prefixed with its 32-bit length; NULL as -1 alone."""
    n = len(values)
    lengths = pc.binary_length(values).fill_null(0).to_numpy().astype(">i4")
    prefix = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), n, [None, pa.py_buffer(lengths.tobytes())])
    joined = pc.binary_join_element_wise(prefix.cast(pa.binary()), values, pa.scalar(b"", pa.binary()))
    return joined.fill_null(pa.scalar(_NULL, pa.binary())) if values.null_count else joined


def _arrays(column: pa.ListArray) -> pa.Array:
    """One-dimensional arrays: ndim 1, has-null flag, element OID, size, lower bound 1, then the elements
    as fields; an empty list is the zero-dimensional empty array; a NULL list is NULL."""
    value_type = column.type.value_type
    oid = _OIDS.get(value_type)
    if oid is None:
        raise TypeError(f"no binary COPY form for Arrow type {column.type}")
    n = len(column)
    sizes = pc.list_value_length(column).fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    flat = column.flatten()  # the non-null lists' elements, in order: ``offsets`` index them
    body = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), field_values(flat)), pa.scalar(b"", pa.binary()))
    nulls_before = np.zeros(len(flat) + 1, np.int64)
    if flat.null_count:
        np.cumsum(flat.is_null().to_numpy(zero_copy_only=False), out=nulls_before[1:])
    has_null = (nulls_before[offsets[1:]] - nulls_before[offsets[:-1]]) > 0
    dims = sizes > 0  # an empty list is the zero-dimensional array, as PostgreSQL writes '{}'
    head_len = np.where(dims, 24, 16)  # length word, ndim, flags, element OID[, size, lower bound 1]
    body_len = pc.binary_length(body).to_numpy().astype(np.int64)
    cells = np.zeros((n, 6), ">i4")
    cells[:, 0] = head_len - 4 + body_len
    cells[:, 1] = dims
    cells[:, 2] = has_null
    cells[:, 3] = oid
    cells[:, 4] = sizes
    cells[:, 5] = 1
    keep = np.ones((n, 24), bool)
    keep[~dims, 16:] = False
    head_values = cells.view(np.uint8).reshape(n, 24)[keep]
    head_offsets = np.zeros(n + 1, np.int32)
    np.cumsum(head_len, out=head_offsets[1:])
    head = pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(head_offsets), pa.py_buffer(head_values)])
    joined = pc.binary_join_element_wise(head, body, pa.scalar(b"", pa.binary()))
    if column.null_count:
        joined = pc.if_else(column.is_null(), pa.scalar(_NULL, pa.binary()), joined)
    return joined
