"""Comparable dumps of what a run leaves behind: every warehouse table and every Delta table of the
lake, without ``fetched_at`` (it records when the API answered, so two equivalent runs differ there)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from nugen_etl import schemas
from nugen_etl.config import Config
from nugen_etl.pipeline import open_configured_warehouse
from nugen_etl.warehouse import Warehouse

# The lake's tables, named here rather than taken from nugen_etl.sinks.lake so a table the product stops
# writing shows up as a difference.
LAKE_SPECS = (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRICS, schemas.LAKE_ACCOUNT_RUNS)
# The BI views, which read the rollups each load maintains: a dump holds what a dashboard shows too.
BI_VIEWS = ("models_latest", "model_usage_daily", "model_accuracy_daily", "model_status_changes", "account_health")


def without_fetched_at(table: pa.Table) -> pa.Table:
    """``table`` without its ``fetched_at`` column, if it has one."""
    return table.drop_columns([c for c in table.column_names if c == "fetched_at"])


def sorted_rows(table: pa.Table) -> list[tuple]:
    """``table``'s rows as tuples, without ``fetched_at``, in a stable order."""
    return sorted((tuple(row.values()) for row in without_fetched_at(table).to_pylist()), key=repr)


def warehouse_dump(wh: Warehouse, account_id: str | None = None) -> dict[str, list[tuple]]:
    """All ``nugen.*`` tables (of one account, if given), rows in primary-key order, no ``fetched_at``;
    and the BI views' rows, sorted."""
    out = {}
    for spec in schemas.ALL_TABLES:
        cols = ", ".join(n for n in spec.schema.names if n != "fetched_at")
        where = " where account_id = ?" if account_id else ""
        out[spec.name] = wh.fetch_all(
            f"select {cols} from nugen.{spec.name}{where} order by {', '.join(spec.primary_key)}", [account_id] if account_id else []
        )
    for view in BI_VIEWS:
        where = " where account_id = ?" if account_id else ""
        out[view] = sorted(wh.fetch_all(f"select * from nugen.{view}{where}", [account_id] if account_id else []), key=repr)
    return out


def config_dump(config: Config, account_id: str | None = None) -> dict[str, list[tuple]]:
    with open_configured_warehouse(config) as wh:
        return warehouse_dump(wh, account_id)


def lake_dump(root: Path) -> dict[str, list[dict] | None]:
    """Every Delta table under ``root`` at its latest version: table -> rows in primary-key order,
    without ``fetched_at`` (None for a table that does not exist, so "absent" differs from "empty").

    Read through deltalake, which sees exactly the files of the current version (a file glob would
    also see files a later commit removed)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    out: dict[str, list[dict] | None] = {}
    for spec in LAKE_SPECS:
        try:
            table = DeltaTable(str(root / spec.name)).to_pyarrow_table()
        except TableNotFoundError:
            out[spec.name] = None
            continue
        table = table.sort_by([(column, "ascending") for column in spec.primary_key])
        out[spec.name] = without_fetched_at(table).to_pylist()
    return out


def lake_version(root: Path, name: str) -> int:
    """The latest committed version of the Delta table ``root/name``."""
    from deltalake import DeltaTable

    return DeltaTable(str(root / name)).version()


def lake_commits_since(root: Path, name: str, version: int) -> list[dict]:
    """The commit infos (operation and custom metadata) of ``root/name`` after ``version``, oldest first."""
    from deltalake import DeltaTable

    dt = DeltaTable(str(root / name))
    return sorted((c for c in dt.history() if c["version"] > version), key=lambda c: c["version"])
