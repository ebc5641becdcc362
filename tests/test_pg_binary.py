"""Binary COPY from Arrow (``nugen_etl.warehouse.pg_binary``) against a real PostgreSQL: every supported
type, NULLs, empty and NULL lists, NULL elements, hostile text and non-finite doubles come back as sent."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nugen_etl.warehouse import pg_binary

pytestmark = pytest.mark.postgres

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("t", pa.string()),
        ("i", pa.int64()),
        ("j", pa.int32()),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("d", pa.date32()),
        ("ts", TS),
        ("names", pa.list_(pa.string())),
        ("values", pa.list_(pa.float64())),
    ]
)
COLUMNS = 't text, i int8, j int4, f float8, b bool, d date, ts timestamptz, names text[], "values" float8[]'

# Text PostgreSQL can hold: any code point but NUL and the surrogates.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
floats = st.floats(allow_nan=True, allow_infinity=True)
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999), timezones=st.just(UTC))
rows = st.fixed_dictionaries(
    {
        "t": st.none() | text,
        "i": st.none() | st.integers(-(2**63), 2**63 - 1),
        "j": st.none() | st.integers(-(2**31), 2**31 - 1),
        "f": st.none() | floats,
        "b": st.none() | st.booleans(),
        "d": st.none() | st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
        "ts": st.none() | moments,
        "names": st.none() | st.lists(st.none() | text, max_size=5),
        "values": st.none() | st.lists(st.none() | floats, max_size=5),
    }
)


@pytest.fixture(scope="module")
def conn(pg_database_url: str):
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"CREATE TEMPORARY TABLE binary_copy ({COLUMNS})")
        yield conn


def copy_and_read(conn: psycopg.Connection, table: pa.Table, chunk_rows: int) -> list[dict]:
    conn.execute("TRUNCATE binary_copy")
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY binary_copy ({', '.join(map(quoted, table.column_names))}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        for chunk in pg_binary.copy_chunks(table, chunk_rows):
            copy.write(chunk)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM binary_copy").fetchall()


def quoted(name: str) -> str:
    return f'"{name}"'


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(rows, max_size=30), st.integers(1, 7))
def test_every_value_comes_back_as_sent(conn: psycopg.Connection, sent: list[dict], chunk_rows: int) -> None:
    table = pa.Table.from_pylist(sent, schema=SCHEMA)
    got = copy_and_read(conn, table, chunk_rows)
    assert len(got) == len(sent)
    for row_sent, row_got in zip(sent, got, strict=False):  # a heap table returns a single COPY's rows in order
        for name, value in row_sent.items():
            assert same(row_got[name], value), (name, value, row_got[name])


def test_sliced_and_chunked_columns_encode_their_own_rows(conn: psycopg.Connection) -> None:
    whole = pa.Table.from_pylist(
        [{"t": f"r{i}", "i": i, "names": [f"n{i}"] * (i % 3) if i % 4 else None, "values": [i / 2] * (i % 3)} for i in range(20)],
        schema=SCHEMA,
    )
    part = pa.concat_tables([whole.slice(3, 5), whole.slice(11, 6)])  # two chunks, each with an offset
    got = copy_and_read(conn, part, 4)
    assert [(r["t"], r["i"], r["names"], r["values"]) for r in got] == [(r["t"], r["i"], r["names"], r["values"]) for r in part.to_pylist()]


def test_an_unsupported_type_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="decimal"):
        list(pg_binary.copy_chunks(pa.table({"x": pa.array([1], pa.decimal128(5, 2))}), 10))
