"""What a wheel of nugen-etl ships: every package under ``nugen_etl/`` (found, not listed by hand) and
every migration as package data. Read from pyproject.toml with setuptools' own discovery."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_under_nugen_etl_is_found() -> None:
    found = set(find_packages(where=str(REPO), **SETUPTOOLS["packages"]["find"]))
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "nugen_etl").rglob("__init__.py")}
    assert "nugen_etl.storage" in on_disk and "nugen_etl.sql" in on_disk
    assert found == on_disk
    assert set(SETUPTOOLS["packages"]) == {"find"} and "package-dir" not in SETUPTOOLS  # nothing listed by hand


def test_every_migration_ships_as_package_data() -> None:
    root = REPO / "nugen_etl" / "sql"
    globs = SETUPTOOLS["package-data"]["nugen_etl.sql"]
    migrations = [p.relative_to(root).as_posix() for p in root.rglob("*.sql")]
    assert len(migrations) > 9
    assert [m for m in migrations if not any(fnmatch.fnmatch(m, g) and m.count("/") == g.count("/") for g in globs)] == []
