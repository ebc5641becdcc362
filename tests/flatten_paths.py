"""The two ways records reach ``flatten``, for tests that run against both.

``general``: as ``json.loads`` gives them (dicts, any shape). ``decoded``: as ``classify_answer``
hands them on when the body has the documented shape (``model_decoder``'s typed records); a body
without that shape stays on the general path, as it does in a run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nugen_etl.flatten import Flattened
from nugen_etl.model_decoder import decode_models
from nugen_etl.warehouse.metric_lists import to_metric_lists

PATHS = ("general", "decoded")
_CHOSEN = {"path": "general"}


@pytest.fixture(params=PATHS)
def flatten_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once per path; ``as_chosen`` hands its records over that way. A module uses it with
    ``pytestmark = pytest.mark.usefixtures("flatten_path")``."""
    _CHOSEN["path"] = request.param
    yield request.param
    _CHOSEN["path"] = "general"


def as_chosen(models: list[Any]) -> list[Any]:
    """``models`` as the path of the running ``flatten_path`` hands them to flatten."""
    return received(models, _CHOSEN["path"])


def body_of(models: list[Any]) -> bytes | None:
    """The answer body holding ``models`` (None if they are not JSON: Python-only values)."""
    try:
        return json.dumps({"domain_aligned_models": models}, allow_nan=True).encode()
    except (TypeError, ValueError, RecursionError):
        return None


def received(models: list[Any], path: str) -> list[Any]:
    """``models`` as ``path`` hands them to flatten."""
    if path == "general":
        return models
    body = body_of(models)
    decoded = None if body is None else decode_models(body)
    return models if decoded is None else decoded


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def assert_identical(got: Flattened, want: Flattened) -> None:
    """Same tables, schemas with metadata, Parquet bytes and ``coerced_count``."""
    assert got.coerced_count == want.coerced_count
    assert got.tables().keys() == want.tables().keys()
    for name, table in want.tables().items():
        other = got.tables()[name]
        assert other.schema.equals(table.schema, check_metadata=True), name
        assert other.equals(table), (name, other.to_pylist(), table.to_pylist())
        assert parquet_bytes(other) == parquet_bytes(table), name
    lists = to_metric_lists(got.metrics)  # what the warehouse would compute from the long rows
    assert got.metric_lists.schema.equals(lists.schema, check_metadata=True) and got.metric_lists.equals(lists)
