"""Warehouse sinks: one interface, an engine per URL scheme (DuckDB embedded, PostgreSQL).

with open_warehouse("duckdb:///./nugen-data/warehouse.duckdb") as wh:
    wh.migrate()
    wh.load(slot_loads)
"""

from __future__ import annotations

from nugen_etl.errors import ConfigError
from nugen_etl.redaction import mask_url
from nugen_etl.warehouse.base import Warehouse

__all__ = ["Warehouse", "open_warehouse"]


def open_warehouse(url: str, *, password: str | None = None, duckdb_memory_limit: str | None = "auto") -> Warehouse:
    """Open the warehouse named by ``url`` (not migrated: call ``migrate()``).

    ``duckdb:///relative/file.duckdb``, ``duckdb:////absolute/file.duckdb``, ``duckdb:///:memory:``
    (``duckdb_memory_limit``: "auto", a size or None, as ``DuckDBWarehouse`` explains);
    ``postgresql://user@host:port/db`` (or ``postgres://``), with ``password`` overriding the URL's
    (otherwise libpq's ``PGPASSWORD`` / ``.pgpass`` apply). Another scheme raises ``ConfigError``.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(
            f"warehouse url {mask_url(url)!r} has no scheme; use duckdb:///path/file.duckdb or postgresql://user@host:5432/db"
        )
    if scheme == "duckdb":
        from nugen_etl.warehouse.duckdb import DuckDBWarehouse

        path = url[len("duckdb:///") :] if url.startswith("duckdb:///") else ""
        if not path:
            raise ConfigError(
                f"warehouse url {url!r} names no file; use duckdb:///relative/path.duckdb, duckdb:////abs/path.duckdb or duckdb:///:memory:"
            )
        return DuckDBWarehouse(path, url=url, memory_limit=duckdb_memory_limit)
    if scheme in ("postgresql", "postgres"):
        try:
            from nugen_etl.warehouse.postgres import PostgresWarehouse
        except ImportError as exc:
            raise ConfigError("a postgresql:// warehouse needs psycopg 3: pip install 'nugen-etl[postgres]'") from exc
        return PostgresWarehouse(url, password=password)
    raise ConfigError(f"unknown warehouse url scheme {scheme!r} in {mask_url(url)!r}; supported: duckdb, postgresql")
