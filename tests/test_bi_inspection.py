"""Self-describing for BI tools: SQLAlchemy inspection (what Superset and Metabase-like tools use to
list a database) sees the warehouse's views, their columns in order, and their COMMENT ON text, on
both engines.

DuckDB goes through the ``duckdb_engine`` dialect, PostgreSQL through SQLAlchemy's own
``postgresql+psycopg``. The expected columns and comments are read from the migrated warehouse's
own catalog (``information_schema.columns`` by ``ordinal_position``, as
``tests/test_warehouse.py::test_views_exist_with_documented_columns`` reads them, and
``relation_comments`` there, i.e. nugen_etl/sql/005_comments.sql), never copied into this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool
from sqlalchemy.types import NullType

from nugen_etl.warehouse import open_warehouse

from .test_warehouse import relation_comments

# What BI tools are pointed at (docs/data-model.md); model_key_snapshots and model_metrics are
# building blocks, checked below like every other view but not required by name here.
BI_VIEWS = ("models_latest", "model_usage_daily", "model_accuracy_daily", "model_status_changes", "account_health")


@dataclass(frozen=True)
class Catalog:
    """What the migrated warehouse says about its own views, read through the nugen connection."""

    views: dict[str, list[str]]  # view -> its columns by ordinal_position
    comments: dict[str, tuple[str | None, dict[str, str | None]]]  # relation -> (comment, {column: comment})


@pytest.fixture
def inspected(warehouse_url: str) -> Iterator[tuple[str, Catalog, sqlalchemy.Inspector]]:
    """(engine, the warehouse's own catalog, a SQLAlchemy inspector over the same warehouse).

    ``warehouse_url`` (tests/conftest.py): a DuckDB file in tmp_path, or PostgreSQL's session
    database with schema nugen dropped (skipped when NUGEN_TEST_PG_URL is unset)."""
    with open_warehouse(warehouse_url) as wh:
        engine = wh.engine
        wh.migrate()
        view_names = [
            v
            for (v,) in wh.fetch_all(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'nugen' AND table_type = 'VIEW' ORDER BY table_name"
            )
        ]
        views = {
            view: [
                c
                for (c,) in wh.fetch_all(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'nugen' AND table_name = ? ORDER BY ordinal_position",
                    [view],
                )
            ]
            for view in view_names
        }
        catalog = Catalog(views, relation_comments(wh))
    # The nugen connection is closed here: DuckDB lets one process hold a file, and a second
    # connection in the same process with another configuration (read_only below) is refused
    # while the first is open.
    if engine == "duckdb":
        url = sqlalchemy.engine.make_url(warehouse_url)  # duckdb:///path is duckdb_engine's URL too
        connect_args = {"read_only": True}  # as a BI tool should open the file
    else:
        url = sqlalchemy.engine.make_url(warehouse_url).set(drivername="postgresql+psycopg")
        connect_args = {}
    sa_engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=NullPool)
    try:
        yield engine, catalog, sqlalchemy.inspect(sa_engine)
    finally:
        sa_engine.dispose()


def test_the_warehouse_catalog_is_what_this_test_expects(inspected: tuple[str, Catalog, sqlalchemy.Inspector]) -> None:
    """The expectations below are read from the warehouse: guard against reading nothing."""
    _, catalog, _ = inspected
    assert set(BI_VIEWS) <= set(catalog.views)
    for view, columns in catalog.views.items():
        assert columns, view
        # Every column is documented: COMMENT ON names exactly the columns the view has.
        assert set(catalog.comments[view][1]) == set(columns), view


def test_inspection_lists_the_views_with_their_columns_in_order(inspected: tuple[str, Catalog, sqlalchemy.Inspector]) -> None:
    engine, catalog, inspector = inspected
    listed = inspector.get_view_names(schema="nugen")
    assert set(BI_VIEWS) <= set(listed), (engine, listed)
    assert sorted(listed) == sorted(catalog.views), engine  # and no table is listed as a view
    assert not set(BI_VIEWS) & set(inspector.get_table_names(schema="nugen")), engine
    for view, expected in catalog.views.items():
        columns = inspector.get_columns(view, schema="nugen")
        assert [c["name"] for c in columns] == expected, (engine, view)
        # A BI tool needs each column's type: the dialect recognised every one.
        untyped = [c["name"] for c in columns if isinstance(c["type"], NullType)]
        assert not untyped, (engine, view, untyped)


def test_inspection_shows_the_comments_of_the_bi_views_and_their_columns(inspected: tuple[str, Catalog, sqlalchemy.Inspector]) -> None:
    # Both dialects expose comments: PostgreSQL's reads pg_description (obj_description /
    # col_description), and duckdb_engine reuses that code over DuckDB's pg_catalog emulation,
    # whose pg_description carries DuckDB's COMMENT ON text for views and their columns.
    engine, catalog, inspector = inspected
    assert inspector.dialect.supports_comments, engine
    for view in BI_VIEWS:
        view_comment, column_comments = catalog.comments[view]
        got = inspector.get_table_comment(view, schema="nugen")["text"]
        assert got and got == view_comment, (engine, view, got)
        for column in inspector.get_columns(view, schema="nugen"):
            name = column["name"]
            assert column.get("comment") and column["comment"] == column_comments[name], (engine, view, name)
