"""Comparable dumps of what a run leaves behind: every warehouse table and every Parquet file,
without ``fetched_at`` (it records when the API answered, so two equivalent runs differ there)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from nugen_etl import schemas
from nugen_etl.config import Config
from nugen_etl.pipeline import open_configured_warehouse
from nugen_etl.warehouse import Warehouse


def warehouse_dump(wh: Warehouse, account_id: str | None = None) -> dict[str, list[tuple]]:
    """All ``nugen.*`` tables (of one account, if given), rows in primary-key order, no ``fetched_at``."""
    out = {}
    for spec in schemas.ALL_TABLES:
        cols = ", ".join(n for n in spec.schema.names if n != "fetched_at")
        where = " where account_id = ?" if account_id else ""
        out[spec.name] = wh.fetch_all(f"select {cols} from nugen.{spec.name}{where} "
                                      f"order by {', '.join(spec.primary_key)}", [account_id] if account_id else [])
    return out


def config_dump(config: Config, account_id: str | None = None) -> dict[str, list[tuple]]:
    with open_configured_warehouse(config) as wh:
        return warehouse_dump(wh, account_id)


def parquet_dump(root: Path) -> dict[str, list[dict]]:
    """Every visible Parquet file under ``root`` (relative path -> rows without ``fetched_at``)."""
    out = {}
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        if "fetched_at" in table.column_names:
            table = table.drop_columns(["fetched_at"])
        out[str(path.relative_to(root))] = table.to_pylist()
    return out
