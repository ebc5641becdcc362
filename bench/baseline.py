"""The straightforward path a user would write, for scenario 2's comparison.

Per account, one after another: ``httpx`` GET -> ``json.loads`` -> ``pandas.json_normalize`` ->
``DataFrame.to_parquet`` -> a row-wise ``executemany`` upsert into DuckDB. The timings are kept per
stage (fetch, parse+flatten, Parquet, warehouse).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd

from nugen_etl.fetch import ALIGNED_MODELS_PATH

_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN"}
_KEY = ("account_id", "id", "snapshot_at")


def run_baseline(base_url: str, accounts: list[tuple[str, str]], *, snapshot_at: datetime, root: Path) -> dict[str, Any]:
    """Run the naive pipeline over ``accounts`` ((id, api key) pairs); returns records and stage seconds."""
    stages = {"fetch": 0.0, "parse_flatten": 0.0, "parquet": 0.0, "warehouse": 0.0}
    records = 0
    root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / "baseline.duckdb"))
    columns: list[str] = []
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for account_id, key in accounts:
            t0 = time.perf_counter()
            response = client.get(ALIGNED_MODELS_PATH, headers={"Authorization": f"Bearer {key}"})
            t1 = time.perf_counter()
            stages["fetch"] += t1 - t0
            if response.status_code == 404:
                continue
            response.raise_for_status()
            models = json.loads(response.content)["domain_aligned_models"]
            df = pd.json_normalize(models)
            df.insert(0, "account_id", account_id)
            df.insert(1, "snapshot_at", pd.Timestamp(snapshot_at))
            t2 = time.perf_counter()
            stages["parse_flatten"] += t2 - t1
            df.to_parquet(root / f"{account_id}.parquet")
            t3 = time.perf_counter()
            stages["parquet"] += t3 - t2
            columns = _ensure_table(con, df, columns)
            frame = df.reindex(columns=columns).astype(object)
            frame = frame.where(frame.notna(), None)
            names = ", ".join(f'"{c}"' for c in columns)
            updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in _KEY)
            con.executemany(
                f"INSERT INTO snapshots ({names}) VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT (account_id, id, snapshot_at) DO UPDATE SET {updates}",
                list(frame.itertuples(index=False, name=None)),
            )
            stages["warehouse"] += time.perf_counter() - t3
            records += len(df)
    total = time.perf_counter() - started
    con.close()
    return {"records": records, "total_s": total, "stages_s": stages}


def _ensure_table(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, columns: list[str]) -> list[str]:
    """Create the table from the first frame's dtypes; add columns a later frame brings."""

    def sql_type(c: str) -> str:
        return "TIMESTAMPTZ" if c == "snapshot_at" else _SQL_TYPES.get(str(df[c].dtype), "TEXT")

    if not columns:
        defs = ", ".join(f'"{c}" {sql_type(c)}' for c in df.columns)
        con.execute(f"CREATE TABLE snapshots ({defs}, PRIMARY KEY (account_id, id, snapshot_at))")
        return list(df.columns)
    new = [c for c in df.columns if c not in columns]
    for c in new:
        con.execute(f'ALTER TABLE snapshots ADD COLUMN "{c}" {sql_type(c)}')
    return columns + new
