"""Discovery of the versioned SQL in ``nugen_etl.sql``: which migrations exist for an engine, in order.

Shared files ``NNN_name.sql`` apply to every engine; ``<engine>/NNN_name.sql`` replaces the
shared file of the same version for that engine. The version recorded in
``nugen.schema_migrations`` is the ``NNN`` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from nugen_etl.errors import WarehouseError
from nugen_etl.warehouse import rollups

_MIGRATION_FILE = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")
ENGINES = ("duckdb", "postgresql")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    source: str  # path inside the sql package, e.g. "002_views.sql" or "postgresql/003_x.sql"
    sql: str


# Statements a migration's transaction runs after its SQL: what plain SQL files cannot share with the
# code (007 fills the rollups with the statements `migrate --rebuild-rollups` runs).
FOLLOW_UPS = {"007": rollups.rebuild_statements}


def follow_ups(migration: Migration) -> list[rollups.Statement]:
    make = FOLLOW_UPS.get(migration.version)
    return make() if make else []


def sql_root() -> Traversable:
    return files("nugen_etl.sql")


def read_bootstrap(root: Traversable | None = None) -> str:
    """The idempotent SQL that creates schema ``nugen`` and its migrations table."""
    return (root or sql_root()).joinpath("bootstrap.sql").read_text(encoding="utf-8")


def discover(engine: str, root: Traversable | None = None) -> list[Migration]:
    """All migrations for ``engine`` in version order, engine-specific files winning."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    root = root or sql_root()
    chosen = _scan(root.iterdir(), prefix="")
    engine_dir = root.joinpath(engine)
    if engine_dir.is_dir():
        chosen.update(_scan(engine_dir.iterdir(), prefix=f"{engine}/"))
    return [chosen[v] for v in sorted(chosen)]


def pending(migrations: Iterable[Migration], applied: Iterable[str]) -> list[Migration]:
    done = set(applied)
    return [m for m in migrations if m.version not in done]


def _scan(entries: Iterable[Traversable], *, prefix: str) -> dict[str, Migration]:
    found: dict[str, Migration] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        match = _MIGRATION_FILE.match(entry.name)
        if not entry.is_file() or match is None:
            continue
        version = match["version"]
        if version in found:
            raise WarehouseError(f"two migrations share version {version}: {found[version].source} and {prefix}{entry.name}")
        found[version] = Migration(version, match["name"], prefix + entry.name, entry.read_text(encoding="utf-8"))
    return found
