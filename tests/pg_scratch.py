"""Scratch PostgreSQL databases, for the tests and the benchmarks alike: created empty on the server
of an admin URL, dropped (sessions and all) when done. Names are made here, never taken from data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def create_database(admin_url: str, name: str, *, owner: str | None = None) -> str:
    """A new empty database ``name`` (replacing one a killed run left behind); returns its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            create = sql.SQL("{} OWNER {}").format(create, sql.Identifier(owner))
        conn.execute(create)
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_pg_database(admin_url: str, name: str) -> Iterator[str]:
    """A new empty database on ``admin_url``'s server, dropped afterwards; yields its URL.

    The name gets this process's id, so concurrent runs (a benchmark and the harness test) never
    drop each other's database.
    """
    name = f"{name}_{os.getpid()}"
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)
