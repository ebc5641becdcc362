"""Layers: only the edges and the orchestration read the configuration or the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nugen_etl"
# What may import nugen_etl.config: the orchestration and the adapters over it (and config itself).
READS_CONFIG = {"config.py", "pipeline.py", "cli.py", "demo.py", "__main__.py", "airflow"}
CLI_USERS = {"cli.py", "__main__.py"}


def _imports(path: Path) -> set[str]:
    """The nugen_etl modules ``path`` imports, as dotted names relative to the package."""
    found: set[str] = set()
    package = path.relative_to(PACKAGE).parent.parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("nugen_etl."):
                module = node.module.removeprefix("nugen_etl.")
            else:
                continue
            found.add(module)
            found.update(f"{module}.{alias.name}" if module else alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("nugen_etl.") for a in node.names if a.name.startswith("nugen_etl."))
    return found


def test_lower_layers_import_neither_the_config_nor_the_cli() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0]
        imported = _imports(path)
        if top not in READS_CONFIG and "config" in imported:
            offenders[str(path.relative_to(PACKAGE))] = "config"
        if top not in CLI_USERS and "cli" in imported:
            offenders[str(path.relative_to(PACKAGE))] = "cli"
    assert offenders == {}


def test_the_check_sees_relative_and_absolute_imports() -> None:
    assert "config" in _imports(PACKAGE / "pipeline.py")
    assert "records" in _imports(PACKAGE / "sinks" / "archive.py")
    assert "config" in _imports(PACKAGE / "airflow" / "sources.py")
