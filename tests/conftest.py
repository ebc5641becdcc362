"""Shared fixtures: a migrated warehouse per engine (DuckDB in tmp_path, PostgreSQL in a throwaway database).

PostgreSQL tests read the server from ``NUGEN_TEST_PG_URL`` (an admin URL, e.g.
``postgresql://postgres@127.0.0.1:5432/test``). Unset: they are skipped. Set but unreachable:
they fail. The run creates its own database ``nugen_test_<random>`` and drops it at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from nugen_etl.redaction import mask_url
from nugen_etl.warehouse import Warehouse, open_warehouse

from .pg_scratch import create_database, drop_database

PG_ENV = "NUGEN_TEST_PG_URL"
# Modules of in-process tests: pure transforms, parsing, configuration, static checks (`make test-fast`,
# `pytest -m unit`). Everything else, and any test needing PostgreSQL, is `integration`: real servers,
# subprocesses, Airflow, a browser, an S3 server or whole runs.
UNIT_MODULES = frozenset(
    {
        "test_batches",
        "test_classify",
        "test_compose",
        "test_config",
        "test_errors",
        "test_flatten",
        "test_flatten_batch",
        "test_flatten_paths",
        "test_flatten_properties",
        "test_live_batching",
        "test_packaging",
        "test_packed_tables",
        "test_layers",
        "test_path_safety",
        "test_runtime",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        unit = module in UNIT_MODULES and "postgres" not in item.keywords
        item.add_marker(pytest.mark.unit if unit else pytest.mark.integration)


ENGINES = [pytest.param("duckdb", id="duckdb"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(
            f"{PG_ENV} is not set; PostgreSQL warehouse tests need a server, e.g. {PG_ENV}=postgresql://postgres@127.0.0.1:5432/test"
        )
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(f"{PG_ENV}={mask_url(url)} is set but the server cannot be reached: {exc}")
    return url


@pytest.fixture(scope="session")
def new_pg_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases of this test session's own, all dropped at the end."""
    names: list[str] = []

    def create() -> str:
        name = f"nugen_test_{secrets.token_hex(6)}"
        names.append(name)
        return create_database(pg_admin_url, name)

    try:
        yield create
    finally:
        for name in names:
            drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def pg_database_url(new_pg_database: Callable[[], str]) -> str:
    """A database of this test session's own, dropped at the end."""
    return new_pg_database()


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """The session database with schema ``nugen`` dropped: every test starts unmigrated."""
    import psycopg

    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS nugen CASCADE")
    return pg_database_url


def fresh_warehouse_url(request: pytest.FixtureRequest, engine: str, folder) -> str:
    """An empty warehouse URL of ``engine``: a DuckDB file in ``folder`` or a new PostgreSQL database."""
    if engine == "duckdb":
        return f"duckdb:///{folder / f'warehouse-{secrets.token_hex(4)}.duckdb'}"
    return request.getfixturevalue("new_pg_database")()


@pytest.fixture(params=ENGINES)
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty, unmigrated warehouse URL for each engine."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """A migrated warehouse for each engine."""
    with open_warehouse(warehouse_url) as wh:
        wh.migrate()
        yield wh
