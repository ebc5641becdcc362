"""A short human report over the warehouse views (used by the demo)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from .warehouse import Warehouse

LATEST_OUTCOMES = """
select r.account_id, r.outcome, r.model_count, coalesce(r.error, '')
from nugen.account_runs r
join (select account_id, max(snapshot_at) as snapshot_at from nugen.account_runs group by account_id) l
  on l.account_id = r.account_id and l.snapshot_at = r.snapshot_at
order by r.account_id
"""

TOP_USAGE_GROWTH = """
select account_id, model_key, sum(usage_delta) as growth, max(usage_count) as latest
from nugen.model_usage_daily
group by account_id, model_key
having sum(usage_delta) is not null
order by growth desc, account_id, model_key
limit 5
"""

ACCURACY_TREND = """
with ranked as (
  select account_id, model_key, accuracy,
         row_number() over (partition by account_id, model_key order by snapshot_at) as from_start,
         row_number() over (partition by account_id, model_key order by snapshot_at desc) as from_end
  from nugen.model_key_snapshots
  where accuracy is not null
)
select f.account_id, f.model_key, f.accuracy, l.accuracy
from ranked f
join ranked l on l.account_id = f.account_id and l.model_key = f.model_key and l.from_end = 1
where f.from_start = 1
order by abs(l.accuracy - f.accuracy) desc, f.account_id, f.model_key
limit 5
"""


def print_report(warehouse: Warehouse, *, root: Path, warehouse_url: str, config_path: Path, out: TextIO) -> None:
    print("\nPer-account outcome (latest slot):", file=out)
    for account_id, outcome, models, error in warehouse.fetch_all(LATEST_OUTCOMES):
        print(f"  {account_id:<16} {outcome:<12} {models:>3} models  {error[:70]}", file=out)
    print("\nTop models by usage growth:", file=out)
    for account_id, model_key, growth, latest in warehouse.fetch_all(TOP_USAGE_GROWTH):
        print(f"  {account_id:<16} {model_key:<30} +{int(growth):<8} (now {int(latest)})", file=out)
    print("\nAccuracy trend (first -> latest snapshot, largest moves):", file=out)
    for account_id, model_key, first, last in warehouse.fetch_all(ACCURACY_TREND):
        print(f"  {account_id:<16} {model_key:<30} {first:.4f} -> {last:.4f} ({last - first:+.4f})", file=out)
    dataset = root / "model_snapshots"
    print(f"\nDelta tables    : {dataset}/, {root / 'model_metrics'}/, {root / 'account_runs'}/", file=out)
    print(f"Raw archive     : {root / 'raw'}/", file=out)
    print(f"Warehouse       : {warehouse_url}", file=out)
    print(f"Config          : {config_path}", file=out)
    print(f"Example query   : {lake_example_command(dataset)}", file=out)
    print(
        f"                  (with DuckDB's delta extension: select ... from delta_scan('{dataset}'); docs/lake.md, 'Reading the lake')",
        file=out,
    )
    print(
        "While runs write : query the Delta tables as above (never blocks a run). A client holding "
        "the DuckDB\n                  file defers the runs' warehouse loads until it lets go "
        "(nothing is lost: `nugen-etl load-pending`).",
        file=out,
    )


LAKE_EXAMPLE_SQL = (
    "select account_id, model_key, snapshot_at, usage_count, accuracy from snapshots "
    "order by snapshot_at desc, account_id, model_key limit 5"
)


def lake_example_command(table: Path) -> str:
    """A shell command that queries the snapshots Delta table offline: deltalake hands DuckDB an Arrow
    dataset of exactly the table's current files (no extension to download)."""
    code = (
        f"import duckdb; from deltalake import DeltaTable; "
        f"snapshots = DeltaTable({str(table)!r}).to_pyarrow_dataset(); "
        f"print(duckdb.sql({LAKE_EXAMPLE_SQL!r}))"
    )
    return f'python -c "{code}"'
