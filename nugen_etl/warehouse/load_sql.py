"""The set-based statements both engines run against the staging tables, built from the declared
schemas: identifiers come from ``nugen_etl.schemas`` only; values are never formatted into SQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from nugen_etl import schemas
from nugen_etl.records import SUCCESS_OUTCOMES
from nugen_etl.schemas import TableSpec
from nugen_etl.warehouse import rollups
from nugen_etl.warehouse.rollups import Statement
from nugen_etl.warehouse.staging import StagedBatch, staging_name

SCHEMA = "nugen"
# The tables whose rows belong to one (account, slot), as the warehouse stores them.
SLOT_TABLES = (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRIC_LISTS, schemas.QUARANTINE)
_SUCCESS = tuple(sorted(o.value for o in SUCCESS_OUTCOMES))


def _cols(spec: TableSpec, prefix: str = "") -> str:
    return ", ".join(prefix + n for n in spec.schema.names)


def delete_slot_sql(spec: TableSpec) -> str:
    """Delete every row of the batch's data-bearing slots (uses the (account_id, snapshot_at) index)."""
    return f"DELETE FROM {SCHEMA}.{spec.name} WHERE (account_id, snapshot_at) IN (SELECT account_id, snapshot_at FROM stg_slot_keys)"


def insert_slot_sql(spec: TableSpec) -> str:
    return f"INSERT INTO {SCHEMA}.{spec.name} ({_cols(spec)}) SELECT {_cols(spec)} FROM {staging_name(spec.name)}"


def upsert_evaluations_sql() -> str:
    """Upsert evaluations: fields from the newest sighting, first/last seen widened.

    The batch is first reduced to one row per key (ON CONFLICT cannot touch a row twice).
    Rows are inserted in key order so concurrent loads lock keys in the same order.
    """
    spec = schemas.EVALUATIONS
    pk = ", ".join(spec.primary_key)
    widened = {"first_seen_at": "min_first_seen_at", "last_seen_at": "max_last_seen_at"}
    select = ", ".join(widened.get(n, n) for n in spec.schema.names)
    newer = "(t.last_seen_at IS NULL OR excluded.last_seen_at >= t.last_seen_at)"
    updates = [
        f"{n} = CASE WHEN {newer} THEN excluded.{n} ELSE t.{n} END"
        for n in spec.schema.names
        if n not in spec.primary_key and n not in widened
    ]
    updates += [
        "first_seen_at = LEAST(t.first_seen_at, excluded.first_seen_at)",
        "last_seen_at = GREATEST(t.last_seen_at, excluded.last_seen_at)",
    ]
    return (
        f"INSERT INTO {SCHEMA}.{spec.name} AS t ({_cols(spec)}) "
        f"SELECT {select} FROM ("
        f" SELECT s.*,"
        f"  ROW_NUMBER() OVER (PARTITION BY {pk} ORDER BY last_seen_at DESC NULLS LAST,"
        f"   model_id DESC NULLS LAST) AS pick,"
        f"  MIN(first_seen_at) OVER (PARTITION BY {pk}) AS min_first_seen_at,"
        f"  MAX(last_seen_at) OVER (PARTITION BY {pk}) AS max_last_seen_at"
        f" FROM {staging_name(spec.name)} AS s) AS x "
        f"WHERE pick = 1 ORDER BY {pk} "
        f"ON CONFLICT ({pk}) DO UPDATE SET {', '.join(updates)}"
    )


def upsert_runs_sql() -> str:
    """Upsert account_runs by key; a non-success never replaces a stored success."""
    spec = schemas.ACCOUNT_RUNS
    pk = ", ".join(spec.primary_key)
    success = ", ".join(f"'{o}'" for o in _SUCCESS)
    updates = ", ".join(f"{n} = excluded.{n}" for n in spec.schema.names if n not in spec.primary_key)
    return (
        f"INSERT INTO {SCHEMA}.{spec.name} AS t ({_cols(spec)}) "
        f"SELECT {_cols(spec)} FROM {staging_name(spec.name)} ORDER BY {pk} "
        f"ON CONFLICT ({pk}) DO UPDATE SET {updates} "
        f"WHERE t.outcome NOT IN ({success}) OR excluded.outcome IN ({success})"
    )


def duplicate_key_sql(spec: TableSpec) -> str:
    """One key that the batch's staging rows of ``spec`` hold twice, if any (for tables whose engine
    enforces no primary key: the slot delete removed every earlier row of the batch's slots, so
    unique staging rows mean unique rows in the table)."""
    keys = ", ".join(spec.primary_key)
    return f"SELECT {keys}, count(*) FROM {staging_name(spec.name)} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1"


def only_appends(batch: StagedBatch, ask: Callable[[Statement], bool]) -> bool:
    """Whether ``batch`` only appends (``rollups.appending_query``, answered by ``ask`` inside the
    load's transaction, with the staging tables in place); False without asking when its shape rules
    that out: rows on more than one day, or rows its own rollups leave to the full upkeep
    (``rollup_batch``: a key shared within a snapshot, a huge usage_count)."""
    if batch.data_days is None or batch.data_days[0] != batch.data_days[1]:
        return False
    daily, days = batch.tables["stg_rollup_daily"], batch.tables["stg_rollup_days"]
    if daily.num_rows and pc.count_distinct(daily["account_id"]).as_py() != days.num_rows:
        return False
    return ask(rollups.appending_query(batch.data_days[0]))


def load_statements(batch: StagedBatch, *, analyze: bool = True, appending: bool = False) -> list[Statement]:
    """The batch's statements in order (``?`` placeholders), for an engine to run inside one
    transaction: the slots replaced, evaluations and runs upserted, the rollups brought up to date
    (``appending``: what ``only_appends`` answered in the same transaction, before these;
    ``analyze``: see ``rollups.maintenance_statements``)."""
    replace = [(delete_slot_sql(spec), ()) for spec in SLOT_TABLES]
    replace += [(insert_slot_sql(spec), ()) for spec in SLOT_TABLES]
    replace += [(upsert_evaluations_sql(), ()), (upsert_runs_sql(), ())]
    floor = success_floor(batch)
    if appending:
        assert batch.data_days is not None
        return replace + rollups.appending_statements(batch.data_days[0], success_floor=floor, analyze=analyze)
    first_day, last_day = batch.data_days or (None, None)
    upkeep = rollups.maintenance_statements(first_day, last_day, success_floor=floor, analyze=analyze)
    return rollups.capture_statements() + replace + upkeep


def success_floor(batch: StagedBatch) -> datetime | None:
    """The earliest of the batch's accounts' newest successful runs in the batch, when every account
    has one (no account's last success is before it once the batch is in), else None."""
    runs = batch.tables[staging_name(schemas.ACCOUNT_RUNS.name)]
    succeeded = runs.filter(pc.is_in(runs["outcome"], pa.array(_SUCCESS)))
    if succeeded.num_rows == 0:
        return None
    newest = succeeded.group_by("account_id", use_threads=False).aggregate([("snapshot_at", "max")])
    if newest.num_rows < pc.count_distinct(runs["account_id"]).as_py():
        return None
    floor: datetime = pc.min(newest["snapshot_at_max"]).as_py()
    return floor
