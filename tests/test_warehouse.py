"""Warehouse contract tests, run on every engine: DDL, migrations, slot loads, views, hostile input.

Engine-specific guarantees (DuckDB file lock; PostgreSQL concurrency and index use) follow at
the end. PostgreSQL needs ``NUGEN_TEST_PG_URL`` (see conftest.py).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nugen_etl import schemas
from nugen_etl.errors import ConfigError, WarehouseBusy, WarehouseError
from nugen_etl.records import AccountRun, Outcome, SlotLoad
from nugen_etl.redaction import mask_url
from nugen_etl.warehouse import Warehouse, migrations, open_warehouse, staging

from .conftest import ENGINES, fresh_warehouse_url
from .programs import program

UTC = UTC
TABLES = {spec.name: spec for spec in schemas.ALL_TABLES}
VIEWS = ("model_key_snapshots", "models_latest", "model_usage_daily", "model_accuracy_daily", "model_status_changes", "account_health")


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, tzinfo=UTC)


# --- building slot loads from a few fields ----------------------------------------------------


def snapshot_rows(account: str, snapshot_at: datetime, models: Iterable[dict]) -> pa.Table:
    """model_snapshots rows from a few fields per model; every other column is null."""
    rows = [
        {
            "account_id": account,
            "snapshot_at": snapshot_at,
            "snapshot_date": snapshot_at.date(),
            "fetched_at": snapshot_at + timedelta(seconds=7),
            "model_key": m.get("alignment_id") or m["model_id"],
            **m,
        }
        for m in models
    ]
    return pa.Table.from_pylist(rows, schema=schemas.MODEL_SNAPSHOTS.schema)


def metric_rows(snapshots: pa.Table) -> pa.Table:
    rows = [
        {
            "account_id": r["account_id"],
            "model_id": r["model_id"],
            "snapshot_at": r["snapshot_at"],
            "metric": "performance_metrics.accuracy",
            "snapshot_date": r["snapshot_date"],
            "model_key": r["model_key"],
            "value": r["accuracy"],
        }
        for r in snapshots.to_pylist()
        if r["accuracy"] is not None
    ]
    return pa.Table.from_pylist(rows, schema=schemas.MODEL_METRICS.schema)


def ok_slot(
    account: str,
    snapshot_at: datetime,
    models: Sequence[dict] = (),
    *,
    evaluations: Sequence[dict] = (),
    quarantined: Sequence[str] = (),
    outcome: Outcome | None = None,
) -> SlotLoad:
    snapshots = snapshot_rows(account, snapshot_at, models)
    evals = pa.Table.from_pylist(
        [{"account_id": account, "first_seen_at": snapshot_at, "last_seen_at": snapshot_at, **e} for e in evaluations],
        schema=schemas.EVALUATIONS.schema,
    )
    quarantine = pa.Table.from_pylist(
        [
            {"account_id": account, "snapshot_at": snapshot_at, "position": i, "reason": "no id", "raw_json": raw}
            for i, raw in enumerate(quarantined)
        ],
        schema=schemas.QUARANTINE.schema,
    )
    run = AccountRun(
        account,
        snapshot_at,
        outcome or (Outcome.OK if models else Outcome.EMPTY),
        http_status=200 if models else 404,
        model_count=len(models),
        quarantined_count=len(quarantined),
        attempts=1,
        fetched_at=snapshot_at + timedelta(seconds=7),
    )
    return SlotLoad(
        run,
        {"model_snapshots": snapshots, "model_metrics": metric_rows(snapshots), "evaluations": evals, "quarantined_records": quarantine},
    )


def failed_slot(account: str, snapshot_at: datetime, outcome: Outcome = Outcome.FAILED) -> SlotLoad:
    return SlotLoad(AccountRun(account, snapshot_at, outcome, http_status=503, attempts=4, error="HTTP 503 after 4 attempts"))


def dump(wh: Warehouse) -> dict[str, list[tuple]]:
    """Every table's rows in primary-key order."""
    return {name: wh.fetch_all(f"SELECT * FROM nugen.{name} ORDER BY {', '.join(spec.primary_key)}") for name, spec in TABLES.items()}


# --- DDL and migrations -----------------------------------------------------------------------

ARROW_TO_SQL = {
    "duckdb": {
        pa.string(): "VARCHAR",
        schemas.TS: "TIMESTAMP WITH TIME ZONE",
        pa.date32(): "DATE",
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
    },
    "postgresql": {
        pa.string(): "text",
        schemas.TS: "timestamp with time zone",
        pa.date32(): "date",
        pa.int64(): "bigint",
        pa.int32(): "integer",
        pa.float64(): "double precision",
        pa.bool_(): "boolean",
    },
}


def sql_type(engine: str, arrow_type: pa.DataType) -> str:
    if pa.types.is_list(arrow_type):  # information_schema names a PostgreSQL array just ARRAY
        return "ARRAY" if engine == "postgresql" else sql_type(engine, arrow_type.value_type) + "[]"
    return ARROW_TO_SQL[engine][arrow_type]


# Relations that are views in the warehouse: their columns mirror the declared schema, and they have no key.
VIEWS_OF_DECLARED_TABLES = (schemas.MODEL_METRICS,)


@pytest.mark.parametrize(
    "spec", [s for s in schemas.ALL_TABLES if s not in VIEWS_OF_DECLARED_TABLES] + [schemas.MODEL_METRIC_LISTS], ids=lambda s: s.name
)
def test_ddl_mirrors_declared_schema(warehouse: Warehouse, spec: schemas.TableSpec) -> None:
    assert_relation_mirrors(warehouse, spec, "BASE TABLE")
    primary_key = warehouse.fetch_all(
        "SELECT k.column_name FROM information_schema.table_constraints AS c "
        "JOIN information_schema.key_column_usage AS k ON k.constraint_name = c.constraint_name "
        " AND k.table_schema = c.table_schema AND k.table_name = c.table_name "
        "WHERE c.table_schema = 'nugen' AND c.table_name = ? AND c.constraint_type = 'PRIMARY KEY' "
        "ORDER BY k.ordinal_position",
        [spec.name],
    )
    if warehouse.engine == "duckdb" and spec in UNKEYED_ON_DUCKDB:
        assert primary_key == [], "DuckDB keeps no ART key on the big slot tables (migration 003)"
        not_null = warehouse.fetch_all(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'nugen' "
            "AND table_name = ? AND is_nullable = 'NO' ORDER BY ordinal_position",
            [spec.name],
        )
        assert {name for (name,) in not_null} == set(spec.primary_key)
    else:
        assert tuple(name for (name,) in primary_key) == spec.primary_key


UNKEYED_ON_DUCKDB = (schemas.MODEL_SNAPSHOTS, schemas.MODEL_METRIC_LISTS)


@pytest.mark.parametrize("spec", VIEWS_OF_DECLARED_TABLES, ids=lambda s: s.name)
def test_views_of_declared_tables_mirror_the_declared_schema(warehouse: Warehouse, spec: schemas.TableSpec) -> None:
    assert_relation_mirrors(warehouse, spec, "VIEW")


def assert_relation_mirrors(warehouse: Warehouse, spec: schemas.TableSpec, table_type: str) -> None:
    """``spec``'s relation is a ``table_type`` with the declared columns and types, in order."""
    columns = warehouse.fetch_all(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'nugen' AND table_name = ? ORDER BY ordinal_position",
        [spec.name],
    )
    assert columns == [(f.name, sql_type(warehouse.engine, f.type)) for f in spec.schema]
    assert warehouse.fetch_all(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'nugen' AND table_name = ?", [spec.name]
    ) == [(table_type,)]


@pytest.mark.parametrize("engine", ENGINES)
def test_upgrade_from_002_keeps_rows_views_and_the_load_protocol(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A warehouse at version 002 holding data (long model_metrics table, keyed slot tables) migrates to
    the current layout (DuckDB 003: unkeyed slot tables; 004: model_metric_lists behind the model_metrics
    view) with every row of every relation unchanged, and a rerun of a loaded slot still leaves one copy
    of each row (the uniqueness the keys used to enforce)."""
    from nugen_etl.warehouse import migrations as mig

    first = ok_slot("acme", at(1), [{"model_id": f"m{i}", "accuracy": 0.5 + i / 10} for i in range(3)])
    second = ok_slot(
        "acme", at(2), [{"model_id": "m0", "accuracy": 0.25}], evaluations=[{"evaluation_id": "e1", "model_id": "m0", "accuracy": 0.25}]
    )
    with open_warehouse(fresh_warehouse_url(request, engine, tmp_path / "current")) as current:
        current.migrate()
        current.load([first, second])
        before = dump(current)
    assert len(before["model_metrics"]) == 4

    with open_warehouse(fresh_warehouse_url(request, engine, tmp_path / "old")) as old:
        _apply_migrations_before(old, "003")
        for name, rows in before.items():  # the same rows, in the 002 tables
            marks = ", ".join(["?"] * len(TABLES[name].schema))
            for row in rows:
                _execute(old, f"INSERT INTO nugen.{name} ({', '.join(TABLES[name].schema.names)}) VALUES ({marks})", row)
        assert old.migrate() == [v for v in (m.version for m in mig.discover(engine)) if v >= "003"]
        assert dump(old) == before
        old.load([first])
        old.load([first, first])
        assert dump(old) == before
        if engine == "duckdb":
            for spec in UNKEYED_ON_DUCKDB:
                keys = ", ".join(spec.primary_key)
                ((dupes,),) = old.fetch_all(
                    f"SELECT count(*) FROM (SELECT {keys} FROM nugen.{spec.name} GROUP BY {keys} HAVING count(*) > 1)"
                )
                assert dupes == 0


def _apply_migrations_before(wh: Warehouse, version: str) -> None:
    from nugen_etl.warehouse import migrations as mig

    _execute(wh, mig.read_bootstrap())
    for m in mig.discover(wh.engine):
        if m.version < version:
            _execute(wh, m.sql)
            _execute(wh, "INSERT INTO nugen.schema_migrations VALUES (?, now())", [m.version])


def _execute(wh: Warehouse, sql: str, params: Sequence[object] = ()) -> None:
    if wh.engine == "duckdb":
        wh.con.execute(sql, list(params))  # type: ignore[attr-defined]
    else:
        from nugen_etl.warehouse.postgres import qmark_to_pyformat

        wh.conn.execute(qmark_to_pyformat(sql) if params else sql, list(params) or None)  # type: ignore[attr-defined]


def test_views_exist_with_documented_columns(warehouse: Warehouse) -> None:
    expected = {
        "models_latest": ["account_id", "model_key", "first_seen_at", "last_seen_at", "is_present"],
        "model_usage_daily": ["account_id", "model_key", "day", "usage_count", "usage_delta"],
        "model_accuracy_daily": ["account_id", "model_key", "day", "accuracy", "uncertainty", "domain_violations"],
        "model_status_changes": [
            "account_id",
            "model_key",
            "changed_at",
            "from_status",
            "to_status",
            "from_deployment_status",
            "to_deployment_status",
        ],
        "account_health": ["account_id", "last_success_at", "last_outcome", "consecutive_failures"],
    }
    for view, columns in expected.items():
        found = [
            c
            for (c,) in warehouse.fetch_all(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'nugen' AND table_name = ? ORDER BY ordinal_position",
                [view],
            )
        ]
        assert set(columns) <= set(found), view
    for view in VIEWS:
        assert warehouse.fetch_all(f"SELECT * FROM nugen.{view}") == []


def test_migrate_is_idempotent(warehouse_url: str) -> None:
    engine = "duckdb" if warehouse_url.startswith("duckdb:") else "postgresql"
    versions = [m.version for m in migrations.discover(engine)]
    with open_warehouse(warehouse_url) as wh:
        assert wh.migrate() == versions
        assert wh.migrate() == []
    with open_warehouse(warehouse_url) as wh:  # a new process sees the same ledger
        assert wh.migrate() == []
        ledger = wh.fetch_all("SELECT version FROM nugen.schema_migrations ORDER BY version")
        assert [v for (v,) in ledger] == versions


def test_engine_specific_migration_replaces_shared(tmp_path: Path) -> None:
    (tmp_path / "001_tables.sql").write_text("-- shared 1")
    (tmp_path / "002_views.sql").write_text("-- shared 2")
    (tmp_path / "notes.txt").write_text("not a migration")
    (tmp_path / "postgresql").mkdir()
    (tmp_path / "postgresql" / "002_views.sql").write_text("-- pg 2")
    (tmp_path / "postgresql" / "003_extra.sql").write_text("-- pg 3")
    pg = migrations.discover("postgresql", tmp_path)
    assert [(m.version, m.source, m.sql) for m in pg] == [
        ("001", "001_tables.sql", "-- shared 1"),
        ("002", "postgresql/002_views.sql", "-- pg 2"),
        ("003", "postgresql/003_extra.sql", "-- pg 3"),
    ]
    assert [m.source for m in migrations.discover("duckdb", tmp_path)] == ["001_tables.sql", "002_views.sql"]
    assert [m.version for m in migrations.pending(pg, ["001"])] == ["002", "003"]
    (tmp_path / "002_other.sql").write_text("-- clash")
    with pytest.raises(WarehouseError, match="002"):
        migrations.discover("duckdb", tmp_path)


def test_shipped_sql_is_package_data() -> None:
    shipped = migrations.discover("duckdb")
    assert [m.version for m in shipped] == sorted({m.version for m in shipped})
    assert "CREATE SCHEMA IF NOT EXISTS nugen" in migrations.read_bootstrap()


# --- opening ----------------------------------------------------------------------------------


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mysql"):
        open_warehouse("mysql://etl:hunter2@db/wh")
    try:
        open_warehouse("mysql://etl:hunter2@db/wh")
    except ConfigError as exc:
        assert "hunter2" not in str(exc)
    with pytest.raises(ConfigError):
        open_warehouse("duckdb://")


def test_duckdb_relative_and_memory_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nugen_etl.warehouse.staging import stage_batch

    monkeypatch.chdir(tmp_path)
    with open_warehouse("duckdb:///./data/wh.duckdb") as wh:
        assert wh.engine == "duckdb"
        wh.migrate()
    assert (tmp_path / "data" / "wh.duckdb").is_file()
    with open_warehouse("duckdb:///:memory:") as wh:
        assert wh.migrate()
        assert wh.fetch_all("SELECT current_setting('TimeZone')") == [("UTC",)]
        load = ok_slot("acme", at(1), models_abc())
        wh.load([load])
        assert wh.load_budget(stage_batch([load])) is None  # no file to evict to: never capped
    assert not (tmp_path / ".tmp").exists()


def test_password_is_masked() -> None:
    assert mask_url("postgresql://etl:s3cret@db.example:5432/wh") == "postgresql://etl:***@db.example:5432/wh"
    assert mask_url("postgresql://etl@db/wh") == "postgresql://etl@db/wh"
    pytest.importorskip("psycopg")
    with pytest.raises(WarehouseError) as caught:
        open_warehouse("postgresql://etl:s3cret@127.0.0.1:1/wh", password="t0psecret")
    assert "s3cret" not in str(caught.value) and "t0psecret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


# --- load semantics ---------------------------------------------------------------------------


def models_abc(usage: int = 1) -> list[dict]:
    return [
        {
            "model_id": f"alignment-{x}",
            "alignment_id": f"alignment-{x}",
            "name": x.upper(),
            "status": "READY",
            "usage_count": usage,
            "accuracy": 0.5,
        }
        for x in "abc"
    ]


def test_rerun_replaces_the_slot_and_leaves_identical_tables(warehouse: Warehouse) -> None:
    first = ok_slot(
        "acme",
        at(1),
        models_abc(),
        quarantined=['{"name": "no id"}', "{}"],
        evaluations=[{"evaluation_id": "ev-1", "model_id": "alignment-a", "status": "READY"}],
    )
    other_slot = ok_slot("acme", at(1, 1), models_abc(2))
    other_account = ok_slot("beta", at(1), models_abc(3))
    warehouse.load([first, other_slot, other_account])
    assert warehouse.fetch_all("SELECT count(*) FROM nugen.model_snapshots") == [(9,)]

    fewer = ok_slot("acme", at(1), models_abc()[:2], quarantined=["{}"])
    warehouse.load([fewer])
    slot_rows = "SELECT model_id FROM nugen.{} WHERE account_id = 'acme' AND snapshot_at = ? ORDER BY 1"
    assert warehouse.fetch_all(slot_rows.format("model_snapshots"), [at(1)]) == [("alignment-a",), ("alignment-b",)]
    assert warehouse.fetch_all(slot_rows.format("model_metrics"), [at(1)]) == [("alignment-a",), ("alignment-b",)]
    assert warehouse.fetch_all("SELECT position FROM nugen.quarantined_records WHERE account_id = 'acme' AND snapshot_at = ?", [at(1)]) == [
        (0,)
    ]
    # other slots and accounts untouched
    assert warehouse.fetch_all("SELECT count(*) FROM nugen.model_snapshots") == [(8,)]

    before = dump(warehouse)
    warehouse.load([fewer])
    warehouse.load([fewer, other_slot, other_account])
    assert dump(warehouse) == before


def test_empty_outcome_replaces_the_slot_with_nothing(warehouse: Warehouse) -> None:
    warehouse.load([ok_slot("acme", at(1), models_abc())])
    warehouse.load([ok_slot("acme", at(1))])  # rerun of the slot now answers "no models"
    assert warehouse.fetch_all("SELECT count(*) FROM nugen.model_snapshots") == [(0,)]
    assert warehouse.fetch_all("SELECT outcome, model_count FROM nugen.account_runs") == [("empty", 0)]


def evaluation(status: str, accuracy: float) -> dict:
    return {"evaluation_id": "ev-1", "model_id": "alignment-a", "model_key": "alignment-a", "status": status, "accuracy": accuracy}


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0, 2, 0)], ids=str)
def test_evaluations_converge_in_any_order(warehouse: Warehouse, order: tuple[int, ...]) -> None:
    slots = [
        ok_slot("acme", at(1, h), models_abc(), evaluations=[evaluation(s, a)])
        for h, s, a in [(0, "PROCESSING", 0.1), (1, "READY", 0.8), (2, "COMPLETED", 0.9)]
    ]
    for i in order:
        warehouse.load([slots[i]])
    assert warehouse.fetch_all("SELECT evaluation_id, status, accuracy, first_seen_at, last_seen_at FROM nugen.evaluations") == [
        ("ev-1", "COMPLETED", 0.9, at(1, 0), at(1, 2))
    ]


def test_evaluations_seen_twice_in_one_batch(warehouse: Warehouse) -> None:
    slots = [
        ok_slot("acme", at(1, h), models_abc(), evaluations=[evaluation(s, 0.5)]) for h, s in [(3, "NEWEST"), (1, "OLD"), (2, "MIDDLE")]
    ]
    warehouse.load(slots)
    assert warehouse.fetch_all("SELECT status, first_seen_at, last_seen_at FROM nugen.evaluations") == [("NEWEST", at(1, 1), at(1, 3))]


sightings = st.lists(
    st.tuples(
        st.sampled_from(["acme", "beta"]),
        st.sampled_from(["ev-1", "ev-2"]),
        st.sampled_from(["m-a", "m-b", "m-c"]),
        st.sampled_from(["READY", "DONE", "OLD"]),
        st.none() | st.integers(0, 3),
        st.none() | st.integers(0, 3),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sightings)
def test_the_staged_evaluations_cut_picks_what_the_upsert_picks(tmp_path_factory, monkeypatch, rows) -> None:
    """``upsert_candidates`` leaves the engine the same choice as the whole batch would: loading with and
    without it gives the same evaluations rows, ties on last_seen_at and NULLs included."""
    table = pa.Table.from_pylist(
        [
            {
                "account_id": a,
                "evaluation_id": e,
                "model_id": m,
                "status": s,
                "first_seen_at": None if f is None else at(1, f),
                "last_seen_at": None if seen is None else at(1, seen),
            }
            for a, e, m, s, f, seen in rows
        ],
        schema=schemas.EVALUATIONS.schema,
    )
    loads = []
    for account in ("acme", "beta"):
        slot = ok_slot(account, at(1), models_abc())
        own = table.filter(pa.compute.equal(table["account_id"], account))
        loads.append(SlotLoad(slot.run, {**slot.tables, "evaluations": own}))
    stored = []
    for cut in (True, False):
        with monkeypatch.context() as patch, open_warehouse(f"duckdb:///{tmp_path_factory.mktemp('wh') / 'w.duckdb'}") as wh:
            if not cut:
                patch.setattr(staging, "upsert_candidates", lambda t: t)
            wh.migrate()
            wh.load(loads)
            stored.append(wh.fetch_all("SELECT * FROM nugen.evaluations ORDER BY account_id, evaluation_id"))
    assert stored[0] == stored[1]
    newest: dict[tuple[str, str], int | None] = {}
    for a, e, _, _, _, seen in rows:
        if seen is not None:
            newest[a, e] = max(seen, newest.get((a, e), seen))
    expected = sum(1 for a, e, _, _, _, seen in rows if newest.get((a, e)) == seen)
    assert staging.upsert_candidates(table).num_rows == expected  # only the sightings that can win are sent


def test_failure_never_overwrites_a_success(warehouse: Warehouse) -> None:
    good = ok_slot("acme", at(1), models_abc())
    warehouse.load([good])
    before = dump(warehouse)
    for batch in (
        [failed_slot("acme", at(1))],
        [failed_slot("acme", at(1), Outcome.AUTH_FAILED)],
        [failed_slot("acme", at(1), Outcome.NOT_OBSERVED)],
    ):
        warehouse.load(batch)
        assert dump(warehouse) == before
    assert warehouse.fetch_all("SELECT outcome, http_status, error FROM nugen.account_runs") == [("ok", 200, None)]
    warehouse.load([ok_slot("acme", at(3), models_abc()[:1]), failed_slot("acme", at(3))])  # one batch
    assert warehouse.fetch_all("SELECT outcome FROM nugen.account_runs WHERE snapshot_at = ?", [at(3)]) == [("ok",)]
    assert warehouse.fetch_all("SELECT count(*) FROM nugen.model_snapshots") == [(4,)]
    # a failure is replaced by a later success, and a failure by a newer failure
    warehouse.load([failed_slot("acme", at(2))])
    warehouse.load([failed_slot("acme", at(2), Outcome.AUTH_FAILED)])
    assert warehouse.fetch_all("SELECT outcome FROM nugen.account_runs WHERE snapshot_at = ?", [at(2)]) == [("auth_failed",)]
    warehouse.load([ok_slot("acme", at(2), models_abc())])
    assert warehouse.fetch_all("SELECT outcome FROM nugen.account_runs WHERE snapshot_at = ?", [at(2)]) == [("ok",)]


def test_failed_account_retires_nothing(warehouse: Warehouse) -> None:
    def present() -> dict[str, bool]:
        return dict(warehouse.fetch_all("SELECT model_key, is_present FROM nugen.models_latest WHERE account_id = 'acme'"))

    warehouse.load([ok_slot("acme", at(1), models_abc())])
    warehouse.load([failed_slot("acme", at(2))])
    warehouse.load([failed_slot("acme", at(3), Outcome.AUTH_FAILED), failed_slot("acme", at(4), Outcome.NOT_OBSERVED)])
    assert present() == {"alignment-a": True, "alignment-b": True, "alignment-c": True}
    warehouse.load([ok_slot("acme", at(5), models_abc()[:1])])
    assert present() == {"alignment-a": True, "alignment-b": False, "alignment-c": False}
    warehouse.load([ok_slot("acme", at(6))])  # the account now has no models at all
    assert present() == {"alignment-a": False, "alignment-b": False, "alignment-c": False}


def test_failed_batch_is_atomic_and_names_its_accounts(warehouse: Warehouse) -> None:
    good = ok_slot("good", at(1), models_abc())
    duplicated = models_abc() + models_abc()[:1]  # the same model twice in one slot
    bad = ok_slot("bad", at(1), duplicated)
    with pytest.raises(WarehouseError) as caught:
        warehouse.load([good, bad])
    assert "good" in str(caught.value) and "bad" in str(caught.value)
    assert all(rows == [] for rows in dump(warehouse).values())
    warehouse.load([good])  # the caller's one-by-one retry
    with pytest.raises(WarehouseError, match="bad"):
        warehouse.load([bad])
    assert warehouse.fetch_all("SELECT DISTINCT account_id FROM nugen.model_snapshots") == [("good",)]


def test_rows_of_another_slot_are_refused(warehouse: Warehouse) -> None:
    load = ok_slot("acme", at(1), models_abc())
    wrong = SlotLoad(AccountRun("acme", at(2), Outcome.OK), load.tables)
    with pytest.raises(WarehouseError, match="another slot"):
        warehouse.load([wrong])
    missing = SlotLoad(load.run, {"model_snapshots": load.tables["model_snapshots"].drop_columns(["name"])})
    with pytest.raises(WarehouseError, match="name"):
        warehouse.load([missing])


# --- views: trend numbers computed here from the inputs ---------------------------------------

# (slot, model_id, alignment_id, usage, status, deployment_status, accuracy)
TREND_INPUT = [
    (at(1, 0), "alignment-x", "alignment-x", 10, "READY", "UNDEPLOYED", 0.70),
    (at(1, 12), "alignment-x", "alignment-x", 25, "READY", "UNDEPLOYED", 0.72),
    (at(2, 0), "alignment-x-deployed", "alignment-x", 30, "DEPLOYED", "DEPLOYED", 0.80),  # id change
    (at(2, 12), "alignment-x-deployed", "alignment-x", 4, "DEPLOYED", "DEPLOYED", 0.81),  # reset
    (at(3, 0), "alignment-x-deployed", "alignment-x", 9, "DEPLOYED", "DEPLOYED", 0.85),
    (at(1, 12), "model-y", None, 100, "PROCESSING", None, None),
    (at(2, 0), "model-y", None, 110, "READY", None, 0.60),
    (at(2, 0), "z-a", "alignment-z", 3, "FAILED", "UNDEPLOYED", 0.10),  # z-a and z-b share a key
    (at(2, 0), "z-b", "alignment-z", 4, "READY", "UNDEPLOYED", 0.90),
    (at(2, 12), "z-a", "alignment-z", 5, "FAILED", "UNDEPLOYED", 0.10),
    (at(2, 12), "z-b", "alignment-z", 6, "READY", "UNDEPLOYED", 0.91),
    (at(3, 0), "z-b", "alignment-z", 8, "READY", "UNDEPLOYED", 0.92),
]
TREND_SLOTS = sorted({row[0] for row in TREND_INPUT})


def trend_loads() -> list[SlotLoad]:
    return [
        ok_slot(
            "acme",
            slot,
            [
                {
                    "model_id": m,
                    "alignment_id": al,
                    "usage_count": u,
                    "status": s,
                    "deployment_status": d,
                    "accuracy": a,
                    "uncertainty": None if a is None else round(1 - a, 2),
                    "name": f"{m} name",
                }
                for (t, m, al, u, s, d, a) in TREND_INPUT
                if t == slot
            ],
        )
        for slot in TREND_SLOTS
    ]


def key_observations() -> dict[str, list[dict]]:
    """Per model_key, one observation per slot: usage summed, fields from the greatest model_id."""
    observed: dict[str, dict[datetime, dict]] = {}
    for t, m, al, u, s, d, a in sorted(TREND_INPUT, key=lambda r: r[1]):
        key = al or m
        obs = observed.setdefault(key, {}).setdefault(t, {"at": t, "usage": 0})
        obs.update(usage=obs["usage"] + u, model_id=m, status=s, deployment_status=d, accuracy=a)
    return {k: [v[t] for t in sorted(v)] for k, v in observed.items()}


def expected_usage_daily() -> set[tuple]:
    out: dict[tuple[str, date], list] = {}
    for key, series in key_observations().items():
        previous = None
        for obs in series:
            cur = obs["usage"]
            delta = None if previous is None else (cur if cur < previous else cur - previous)
            entry = out.setdefault((key, obs["at"].date()), [None, None])
            entry[0] = cur
            if delta is not None:
                entry[1] = delta if entry[1] is None else entry[1] + delta
            previous = cur
    return {("acme", k, day, c, d) for (k, day), (c, d) in out.items()}


@pytest.fixture
def trends(warehouse: Warehouse) -> Warehouse:
    warehouse.load(trend_loads())
    warehouse.load([failed_slot("acme", at(3, 12))])
    return warehouse


def test_usage_daily(trends: Warehouse) -> None:
    rows = set(trends.fetch_all("SELECT account_id, model_key, day, usage_count, usage_delta FROM nugen.model_usage_daily"))
    assert rows == expected_usage_daily()
    # spot checks by hand, so the reference above cannot be wrong in the same way as the view
    assert ("acme", "alignment-x", date(2024, 3, 2), 4, 9) in rows  # 25->30 (+5), reset to 4 (+4)
    assert ("acme", "model-y", date(2024, 3, 1), 100, None) in rows  # first observation only
    assert ("acme", "alignment-z", date(2024, 3, 2), 11, 4) in rows  # 3+4=7 then 5+6=11
    assert ("acme", "alignment-z", date(2024, 3, 3), 8, 8) in rows  # 11 -> 8 is a reset


def test_accuracy_daily_from_the_days_last_snapshot(trends: Warehouse) -> None:
    expected = set()
    for key, series in key_observations().items():
        last_of_day = {obs["at"].date(): obs for obs in series}
        expected |= {
            ("acme", key, day, o["accuracy"], None if o["accuracy"] is None else round(1 - o["accuracy"], 2))
            for day, o in last_of_day.items()
        }
    rows = set(trends.fetch_all("SELECT account_id, model_key, day, accuracy, uncertainty FROM nugen.model_accuracy_daily"))
    assert rows == expected
    assert ("acme", "alignment-x", date(2024, 3, 2), 0.81, 0.19) in rows


def test_status_changes(trends: Warehouse) -> None:
    expected = set()
    for key, series in key_observations().items():
        for prev, cur in zip(series, series[1:], strict=False):
            if (prev["status"], prev["deployment_status"]) != (cur["status"], cur["deployment_status"]):
                expected.add(("acme", key, cur["at"], prev["status"], cur["status"], prev["deployment_status"], cur["deployment_status"]))
    rows = set(
        trends.fetch_all(
            "SELECT account_id, model_key, changed_at, from_status, to_status, from_deployment_status, "
            "to_deployment_status FROM nugen.model_status_changes"
        )
    )
    assert (
        rows
        == expected
        == {
            ("acme", "alignment-x", at(2), "READY", "DEPLOYED", "UNDEPLOYED", "DEPLOYED"),
            ("acme", "model-y", at(2), "PROCESSING", "READY", None, None),
        }
    )


def test_models_latest(trends: Warehouse) -> None:
    rows = {
        r[0]: r[1:]
        for r in trends.fetch_all(
            "SELECT model_key, model_id, usage_count, status, record_count, first_seen_at, last_seen_at, "
            "is_present FROM nugen.models_latest WHERE account_id = ?",
            ["acme"],
        )
    }
    last_ok = max(TREND_SLOTS)  # the failed run at day 3 12:00 retires nothing
    expected = {}
    for key, series in key_observations().items():
        last = series[-1]
        records = sum(1 for t, m, al, *_ in TREND_INPUT if (al or m) == key and t == last["at"])
        expected[key] = (last["model_id"], last["usage"], last["status"], records, series[0]["at"], last["at"], last["at"] == last_ok)
    assert rows == expected
    assert rows["alignment-x"][0] == "alignment-x-deployed" and rows["alignment-x"][-1] is True
    assert rows["model-y"][-1] is False


def test_key_snapshots_sum_usage_of_shared_keys(trends: Warehouse) -> None:
    assert trends.fetch_all(
        "SELECT snapshot_at, model_id, status, usage_count, record_count FROM nugen.model_key_snapshots "
        "WHERE model_key = ? ORDER BY snapshot_at",
        ["alignment-z"],
    ) == [(at(2, 0), "z-b", "READY", 7, 2), (at(2, 12), "z-b", "READY", 11, 2), (at(3, 0), "z-b", "READY", 8, 1)]


def test_account_health(warehouse: Warehouse) -> None:
    runs = {
        "acme": [(at(1), Outcome.OK), (at(2), Outcome.FAILED), (at(3), Outcome.AUTH_FAILED), (at(4), Outcome.NOT_OBSERVED)],
        "beta": [(at(1), Outcome.FAILED), (at(2), Outcome.FAILED)],
        "gamma": [(at(1), Outcome.FAILED), (at(2), Outcome.OK)],
        "delta": [(at(1), Outcome.EMPTY)],
    }
    loads = []
    for account, history in runs.items():
        for t, outcome in history:
            loads.append(
                ok_slot(account, t, models_abc())
                if outcome == Outcome.OK
                else ok_slot(account, t)
                if outcome == Outcome.EMPTY
                else failed_slot(account, t, outcome)
            )
    warehouse.load(loads[::-1])
    expected = set()
    for account, history in runs.items():
        successes = [t for t, o in history if o in (Outcome.OK, Outcome.EMPTY)]
        last_success = max(successes, default=None)
        failures = sum(1 for t, o in history if o in (Outcome.FAILED, Outcome.AUTH_FAILED) and (last_success is None or t > last_success))
        expected.add((account, last_success, max(history)[1].value, failures))
    rows = set(warehouse.fetch_all("SELECT account_id, last_success_at, last_outcome, consecutive_failures FROM nugen.account_health"))
    assert rows == expected
    assert ("acme", at(1), "not_observed", 2) in rows and ("beta", None, "failed", 2) in rows


# --- hostile input ----------------------------------------------------------------------------


def deep_json(levels: int) -> str:
    value: object = {"accuracy": 0.5}
    for i in range(levels):
        value = {f"level{i}": value}
    return json.dumps(value)


HOSTILE = [
    "O'Reilly \"double\" `back` ''",
    "back\\slash \\N \\\\ \\x00 \\.",
    "emoji 🚀👩‍💻🏳️‍🌈 ünïcödé 日本語",
    "x" * 10_240 + "<end>",
    "tab\tnew\nline\r\ncr",
    "%s %(name)s %% ? $1 :name",
    "",
    "  padded  ",
    "'; DROP TABLE nugen.model_snapshots; --",
]


def test_hostile_strings_round_trip(warehouse: Warehouse) -> None:
    models = [
        {
            "model_id": f"m-{i}-'\"\\🚀",
            "name": s,
            "creator": s[::-1],
            "endpoint": s,
            "extra_json": json.dumps({"v": s}),
            "evaluation_data_json": deep_json(50),
        }
        for i, s in enumerate(HOSTILE)
    ]
    warehouse.load([ok_slot("acme", at(1), models)])
    warehouse.load([ok_slot("acme", at(1), models)])
    stored = warehouse.fetch_all(
        "SELECT model_id, name, creator, endpoint, extra_json, evaluation_data_json FROM nugen.model_snapshots ORDER BY model_id"
    )
    assert stored == sorted(
        (m["model_id"], m["name"], m["creator"], m["endpoint"], m["extra_json"], m["evaluation_data_json"]) for m in models
    )
    assert warehouse.fetch_all("SELECT name FROM nugen.model_snapshots WHERE name = ?", [HOSTILE[3]]) == [(HOSTILE[3],)]


def test_nul_character_is_refused_with_a_reason(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"acme.*NUL") as caught:
        warehouse.load([ok_slot("acme", at(1), [{"model_id": "m", "name": "a\x00b"}])])
    assert "name" in str(caught.value)
    assert all(rows == [] for rows in dump(warehouse).values())


# --- DuckDB specifics -------------------------------------------------------------------------


def test_duckdb_busy_file_raises_warehouse_busy(tmp_path: Path) -> None:
    from nugen_etl.warehouse.duckdb import DuckDBWarehouse

    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, program("hold_duckdb"), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        started = time.monotonic()
        with pytest.raises(WarehouseBusy, match="locked by another process"):
            DuckDBWarehouse(str(path), busy_timeout_s=1.0)
        assert time.monotonic() - started >= 0.7  # it retried before giving up
    finally:
        holder.kill()
        holder.wait()
    with DuckDBWarehouse(str(path)) as wh:  # free again
        assert wh.migrate()


def _staged_bytes(loads: Sequence[SlotLoad]) -> int:
    from nugen_etl.warehouse.staging import stage_batch

    return sum(table.nbytes for table in stage_batch(loads).tables.values())


def _wide_loads(n: int) -> list[SlotLoad]:
    wide = [{**m, "name": m["name"] * 200_000} for m in models_abc()]  # ~600 KB of names per slot
    return [ok_slot(f"wide-{i}", at(2), wide) for i in range(n)]


def test_duckdb_auto_budget_is_the_measured_index_memory_plus_the_batch_headroom(tmp_path: Path) -> None:
    from nugen_etl.warehouse.duckdb import HEADROOM_MIN, DuckDBWarehouse
    from nugen_etl.warehouse.staging import stage_batch

    small, large = [ok_slot("acme", at(1), models_abc())], _wide_loads(20)
    assert 4 * _staged_bytes(small) < HEADROOM_MIN < 4 * _staged_bytes(large)
    with DuckDBWarehouse(str(tmp_path / "w.duckdb")) as wh:
        wh.migrate()
        uncapped = wh.fetch_all("SELECT current_setting('memory_limit')")
        assert wh.load_budget(stage_batch(small)) is None  # the first load runs uncapped and measures
        wh.load(small)
        budget_small, budget_large = wh.load_budget(stage_batch(small)), wh.load_budget(stage_batch(large))
        assert budget_small is not None and budget_large is not None and budget_small >= HEADROOM_MIN
        assert budget_large - budget_small == 4 * _staged_bytes(large) - HEADROOM_MIN  # same index memory
        wh.load(large)
        assert wh.fetch_all("SELECT current_setting('memory_limit')") == uncapped  # lifted after the load
        assert wh.fetch_all("SELECT count(*), sum(length(name)) FROM nugen.model_snapshots") == [
            (
                3 + 20 * 3,
                sum(len(m["name"]) for m in models_abc())
                + sum(len(name) for load in large for name in load.tables["model_snapshots"]["name"].to_pylist()),
            )
        ]


def test_duckdb_load_that_outgrows_its_budget_runs_again_with_twice_the_headroom_then_uncapped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from nugen_etl.warehouse.duckdb import DuckDBWarehouse
    from nugen_etl.warehouse.staging import StagedBatch, stage_batch

    class TightBudget(DuckDBWarehouse):
        def load_budget(self, batch: StagedBatch) -> int | None:
            return 64 * 1024  # less than one of DuckDB's 256 KiB blocks: every capped attempt fails

    loads = [ok_slot("acme", at(1), models_abc()), ok_slot("globex", at(1), models_abc(2))]
    with TightBudget(str(tmp_path / "w.duckdb"), headroom_min=2**20) as wh:
        wh.migrate()
        uncapped = wh.fetch_all("SELECT current_setting('memory_limit')")
        with caplog.at_level(logging.INFO, logger="nugen_etl.warehouse.duckdb"):
            wh.load(loads)
        assert [(r.levelname, r.getMessage().rsplit("); ", 1)[-1]) for r in caplog.records] == [
            ("INFO", "loading it again with twice the headroom"),
            ("WARNING", "loading it without the cap"),
        ]
        assert all(
            "needed more than its 0 MiB budget for the batch of 2 account(s) (Out of Memory" in r.getMessage() for r in caplog.records
        )
        assert wh.fetch_all("SELECT account_id, sum(usage_count) FROM nugen.model_snapshots GROUP BY account_id ORDER BY account_id") == [
            ("acme", 3),
            ("globex", 6),
        ]
        assert wh.fetch_all("SELECT current_setting('memory_limit')") == uncapped
        small, large = stage_batch(loads), stage_batch(_wide_loads(1))
        assert 4 * _staged_bytes(loads) < 2**20 < 4 * _staged_bytes(_wide_loads(1))
        grown = DuckDBWarehouse.load_budget(wh, large) - DuckDBWarehouse.load_budget(wh, small)
        assert grown == 4 * (4 * _staged_bytes(_wide_loads(1)) - 2**20)  # the headroom doubled twice


def test_duckdb_never_prints_a_progress_bar(tmp_path: Path) -> None:
    # DuckDB's own default prints it on statements over 2 s (seen under `python -m bench`); a scheduled
    # job's log must not fill with terminal bars.
    with open_warehouse(f"duckdb:///{tmp_path / 'quiet.duckdb'}") as wh:
        assert wh.fetch_all("SELECT current_setting('enable_progress_bar_print')") == [(False,)]


def test_duckdb_session_is_utc(tmp_path: Path) -> None:
    with open_warehouse(f"duckdb:///{tmp_path / 'tz.duckdb'}") as wh:
        wh.migrate()
        wh.load([ok_slot("acme", datetime(2024, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))), models_abc())])
        assert wh.fetch_all("SELECT DISTINCT snapshot_at, snapshot_at::DATE FROM nugen.model_snapshots") == [
            (datetime(2024, 2, 29, 23, 30, tzinfo=UTC), date(2024, 2, 29))
        ]


# --- PostgreSQL specifics ---------------------------------------------------------------------


def run_in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = work(barrier, i)
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.mark.postgres
def test_pg_concurrent_migrate(pg_url: str) -> None:
    def migrate(barrier: threading.Barrier, _: int) -> list[str]:
        with open_warehouse(pg_url) as wh:
            barrier.wait()
            return wh.migrate()

    results = run_in_threads(4, migrate)
    versions = [m.version for m in migrations.discover("postgresql")]
    assert sorted(v for r in results for v in r) == versions  # each applied exactly once
    with open_warehouse(pg_url) as wh:
        assert wh.fetch_all("SELECT count(*) FROM nugen.schema_migrations") == [(len(versions),)]


@pytest.mark.postgres
def test_pg_copy_sent_in_slices_keeps_every_row_and_value(pg_url: str, monkeypatch) -> None:
    from nugen_etl.warehouse import pg_binary, postgres

    monkeypatch.setattr(postgres, "COPY_CHUNK_ROWS", 2)
    slice_rows: list[int] = []
    encode_rows = pg_binary.encode_rows

    def counting_encode_rows(batch, *args, **kwargs):
        slice_rows.append(batch.num_rows)
        return encode_rows(batch, *args, **kwargs)

    monkeypatch.setattr(pg_binary, "encode_rows", counting_encode_rows)
    models = [{"model_id": f"m-{i}", "name": s, "creator": s[::-1], "usage_count": i} for i, s in enumerate(HOSTILE)]
    with open_warehouse(pg_url) as wh:
        wh.migrate()
        wh.load([ok_slot("acme", at(1), models)])
        stored = wh.fetch_all(
            "SELECT model_id, name, creator, usage_count, alignment_id IS NULL FROM nugen.model_snapshots ORDER BY usage_count"
        )
    assert stored == [(m["model_id"], m["name"], m["creator"], m["usage_count"], True) for m in models]
    assert max(slice_rows) == 2 and sum(n == 2 for n in slice_rows) >= len(models) // 2


@pytest.mark.postgres
def test_pg_concurrent_loads_of_one_slot_leave_one_copy(pg_url: str) -> None:
    with open_warehouse(pg_url) as wh:
        wh.migrate()
    evaluations = [{"evaluation_id": "ev-shared", "model_id": "alignment-a", "status": "READY"}]
    variants = [ok_slot("acme", at(1), models_abc(n)[: 1 + n], evaluations=evaluations) for n in (1, 2)]
    other_slots = [ok_slot("acme", at(2, h), models_abc(), evaluations=evaluations) for h in range(4)]

    for _ in range(5):

        def load(barrier: threading.Barrier, i: int) -> None:
            with open_warehouse(pg_url) as wh:
                barrier.wait()
                wh.load([variants[i % 2], other_slots[i]])

        run_in_threads(4, load)
        with open_warehouse(pg_url) as wh:
            slot = wh.fetch_all("SELECT model_id, usage_count FROM nugen.model_snapshots WHERE snapshot_at = ? ORDER BY model_id", [at(1)])
            assert slot in ([("alignment-a", 1), ("alignment-b", 1)], [("alignment-a", 2), ("alignment-b", 2), ("alignment-c", 2)])
            assert wh.fetch_all("SELECT count(*) FROM nugen.account_runs") == [(5,)]
            assert wh.fetch_all("SELECT count(*) FROM nugen.evaluations") == [(1,)]


def fill_history(pg_url: str, *, accounts: int, slots: int, models: int) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO nugen.model_snapshots (account_id, model_id, snapshot_at, snapshot_date, model_key, "
            " usage_count, status) "
            "SELECT 'acct-' || a, 'model-' || m, ts, (ts AT TIME ZONE 'UTC')::date, 'model-' || m, a * m, 'READY' "
            "FROM generate_series(1, %s) AS a, generate_series(1, %s) AS m, "
            " generate_series(timestamptz '2024-01-01 00:00Z', timestamptz '2024-01-01 00:00Z' "
            "  + (%s - 1) * interval '1 hour', interval '1 hour') AS ts",
            [accounts, models, slots],
        )
        conn.execute(
            "INSERT INTO nugen.model_metric_lists (account_id, snapshot_at, model_id, snapshot_date, "
            "model_key, metric_names, metric_values) SELECT account_id, snapshot_at, model_id, "
            "snapshot_date, model_key, ARRAY['performance_metrics.accuracy'], ARRAY[0.5] "
            "FROM nugen.model_snapshots"
        )
        conn.execute("ANALYZE nugen.model_snapshots")
        conn.execute("ANALYZE nugen.model_metric_lists")


@pytest.mark.postgres
def test_pg_slot_delete_uses_an_index(pg_url: str) -> None:
    import psycopg

    from nugen_etl.warehouse.load_sql import delete_slot_sql

    with open_warehouse(pg_url) as wh:
        wh.migrate()
    fill_history(pg_url, accounts=40, slots=50, models=10)  # 20,000 snapshot rows
    with psycopg.connect(pg_url) as conn:  # the engine's staging of one slot key, then its DELETE
        conn.execute("CREATE TEMPORARY TABLE stg_slot_keys (account_id text, snapshot_at timestamptz) ON COMMIT DROP")
        conn.execute("INSERT INTO stg_slot_keys VALUES ('acct-7', '2024-01-01 05:00Z')")
        conn.execute("ANALYZE stg_slot_keys")
        for spec, index in ((schemas.MODEL_SNAPSHOTS, "model_snapshots_pkey"), (schemas.MODEL_METRIC_LISTS, "model_metric_lists_pkey")):
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + delete_slot_sql(spec)))
            assert f"Seq Scan on {spec.name}" not in plan, plan
            assert any(
                f"{scan} on {index}" in plan or f"{scan} using {index}" in plan
                for scan in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
            ), plan
        conn.rollback()
    # and the real load replaces exactly that slot on the big table
    with open_warehouse(pg_url) as wh:
        wh.load([ok_slot("acct-7", at(1), models_abc())])
        wh.load([ok_slot("acct-7", datetime(2024, 1, 1, 5, tzinfo=UTC), models_abc())])
        assert wh.fetch_all("SELECT count(*) FROM nugen.model_snapshots") == [(20_000 - 10 + 6,)]


@pytest.mark.postgres
def test_pg_key_snapshots_use_the_keys_for_one_model(pg_url: str) -> None:
    """model_key_snapshots still reads model_snapshots (the BI views read rollups: tests/test_rollups.py)."""
    import psycopg

    with open_warehouse(pg_url) as wh:
        wh.migrate()
    fill_history(pg_url, accounts=40, slots=50, models=10)
    with psycopg.connect(pg_url) as conn:
        plan = "\n".join(
            r[0]
            for r in conn.execute("EXPLAIN SELECT * FROM nugen.model_key_snapshots WHERE account_id = 'acct-7' AND model_key = 'model-3'")
        )
        assert "Seq Scan on model_snapshots" not in plan, plan


@pytest.mark.postgres
def test_pg_password_never_shown(pg_url: str) -> None:
    parts = pg_url.split("://", 1)[1]
    user, rest = parts.split("@", 1)
    with open_warehouse(f"postgresql://{user}:s3cret-pw@{rest}", password="other-s3cret") as wh:
        assert wh.engine == "postgresql"  # trust auth ignores the password; it must still stay hidden
        assert "s3cret" not in repr(wh) and "s3cret" not in wh.url and "***" in wh.url


def test_duckdb_memory_limit_from_the_config_reaches_the_connection(tmp_path: Path) -> None:
    from nugen_etl.config import parse_config
    from nugen_etl.pipeline import open_configured_warehouse

    def configured_limit(extra: str) -> str:
        data = {
            "storage": {"root": str(tmp_path)},
            "accounts": [{"id": "a", "api_key_env": "K"}],
            "warehouse": {"url": f"duckdb:///{tmp_path / 'w.duckdb'}", **({"duckdb_memory_limit": extra} if extra else {})},
        }
        with open_configured_warehouse(parse_config(data, base_dir=tmp_path, environ={"K": "x"})) as wh:
            ((value,),) = wh.fetch_all("SELECT current_setting('memory_limit')")
        return value

    assert configured_limit("300MB") == f"{300e6 / 2**20:.1f} MiB"  # DuckDB reports MB in MiB
    # "auto" (the default) caps loads only, so between them the connection has DuckDB's own limit
    assert configured_limit("") == configured_limit("auto") == configured_limit("none") != configured_limit("300MB")


# --- model_metrics: stored as lists, read through the view --------------------------------------

HOSTILE_METRICS = [  # (metric path, value): quoting, escapes, separators and doubles at the edges
    ('performance_metrics.a"b', 0.1),
    ("performance_metrics.c\\\\d", 1 / 3),
    ("evaluation_data.{x,y}", 1e-7),
    ("evaluation_data.NULL", -0.0),
    ("evaluation_data.ü ñ 字", 1.7976931348623157e308),
    ("evaluation_data.'q'", 5e-324),
    ("evaluation_data.metrics.f1", 12345678901234567.0),
    ("evaluation_data.", 0.0),
]


def test_metrics_round_trip_through_the_lists_exactly(warehouse: Warehouse) -> None:
    warehouse.migrate()
    base = ok_slot("acme", at(1), [{"model_id": "m1", "alignment_id": "k1"}, {"model_id": "m2"}])
    rows = [
        {
            "account_id": "acme",
            "model_id": model,
            "snapshot_at": at(1),
            "metric": metric,
            "snapshot_date": at(1).date(),
            "model_key": key,
            "value": value,
        }
        for model, key in (("m1", "k1"), ("m2", "m2"))
        for metric, value in HOSTILE_METRICS
    ]
    rows = rows[1::2] + rows[0::2]  # the two snapshots' rows interleaved: not one run per snapshot
    long = pa.Table.from_pylist(rows, schema=schemas.MODEL_METRICS.schema)
    warehouse.load([SlotLoad(base.run, {**base.tables, "model_metrics": long})])
    got = warehouse.fetch_all("SELECT account_id, model_id, snapshot_at, metric, snapshot_date, model_key, value FROM nugen.model_metrics")

    def exact(row: Sequence) -> tuple:  # repr tells -0.0 from 0.0
        return (*row[:-1], repr(row[-1]))

    assert sorted(map(exact, got)) == sorted(exact(tuple(r.values())) for r in rows)
    ((lists,),) = warehouse.fetch_all("SELECT count(*) FROM nugen.model_metric_lists")
    assert lists == 2


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda rows: rows + rows[:1], "twice"),
        (lambda rows: [dict(rows[0], model_key="other"), *rows[1:]], "model_key"),
        (lambda rows: [dict(rows[0], metric=None), *rows[1:]], "no metric path"),
    ],
)
def test_metrics_a_snapshot_cannot_hold_twice_are_refused(warehouse: Warehouse, change, complaint) -> None:
    warehouse.migrate()
    base = ok_slot("acme", at(1), [{"model_id": "m1"}])
    rows = [
        {
            "account_id": "acme",
            "model_id": "m1",
            "snapshot_at": at(1),
            "metric": metric,
            "snapshot_date": at(1).date(),
            "model_key": "m1",
            "value": value,
        }
        for metric, value in HOSTILE_METRICS
    ]
    long = pa.Table.from_pylist(change(rows), schema=schemas.MODEL_METRICS.schema)
    with pytest.raises(WarehouseError, match=complaint) as caught:
        warehouse.load([SlotLoad(base.run, {**base.tables, "model_metrics": long})])
    assert "acme" in str(caught.value)
    assert warehouse.fetch_all("SELECT count(*) FROM nugen.model_metric_lists") == [(0,)]


def test_non_finite_metric_values_load_too(warehouse: Warehouse) -> None:
    """Flattening never writes NaN or infinities, but a hand-built load may: they come back as they were."""
    warehouse.migrate()
    base = ok_slot("acme", at(1), [{"model_id": "m1"}])
    values = [("a", float("nan")), ("b", float("inf")), ("c", float("-inf")), ('d"{,}', 0.5)]
    long = pa.Table.from_pylist(
        [
            {
                "account_id": "acme",
                "model_id": "m1",
                "snapshot_at": at(1),
                "metric": m,
                "snapshot_date": at(1).date(),
                "model_key": "m1",
                "value": v,
            }
            for m, v in values
        ],
        schema=schemas.MODEL_METRICS.schema,
    )
    warehouse.load([SlotLoad(base.run, {**base.tables, "model_metrics": long})])
    got = dict(warehouse.fetch_all("SELECT metric, value FROM nugen.model_metrics"))
    assert set(got) == {m for m, _ in values}
    assert got["a"] != got["a"] and got["b"] == float("inf") and got["c"] == float("-inf") and got['d"{,}'] == 0.5


# --- self-describing for BI tools ---------------------------------------------------------------


def relation_comments(warehouse: Warehouse) -> dict[str, tuple[str | None, dict[str, str | None]]]:
    """relation -> (its comment, {column: comment}) for every table and view in schema nugen."""
    if warehouse.engine == "duckdb":
        relations = warehouse.fetch_all(
            "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'nugen' "
            "UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'nugen'"
        )
        columns = warehouse.fetch_all("SELECT table_name, column_name, comment FROM duckdb_columns() WHERE schema_name = 'nugen'")
    else:
        relations = warehouse.fetch_all(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = 'nugen' AND c.relkind IN ('r', 'v')"
        )
        columns = warehouse.fetch_all(
            "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_attribute AS a ON a.attrelid = c.oid "
            "WHERE n.nspname = 'nugen' AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped"
        )
    out: dict[str, tuple[str | None, dict[str, str | None]]] = {name: (comment, {}) for name, comment in relations}
    for relation, column, comment in columns:
        out[relation][1][column] = comment
    return out


def test_every_table_view_and_column_says_what_it_means(warehouse: Warehouse) -> None:
    """BI tools (Metabase, Superset) show COMMENT ON text; every relation and column has one on both
    engines, and the grain of every table and view is stated."""
    warehouse.migrate()
    found = relation_comments(warehouse)
    assert set(found) >= set(VIEWS) | set(TABLES) | {"model_metric_lists", "schema_migrations"}
    for relation, (comment, columns) in found.items():
        assert comment and len(comment) > 20, relation
        assert columns and all(text and len(text) > 3 for text in columns.values()), (relation, columns)
    for name in (*VIEWS, *TABLES, "model_metric_lists"):
        assert "one row per" in found[name][0].lower() or "grain" in found[name][0].lower(), name
    assert "coalesce(alignment_id, id)" in found["model_snapshots"][1]["model_key"]
    assert "reset" in found["model_usage_daily"][1]["usage_delta"]


def test_the_data_model_page_lists_every_relation(warehouse: Warehouse) -> None:
    warehouse.migrate()
    page = (Path(__file__).resolve().parent.parent / "docs" / "data-model.md").read_text()
    for relation in relation_comments(warehouse):
        assert f"`{relation}`" in page, relation


def test_the_data_model_page_example_queries_run(warehouse: Warehouse) -> None:
    warehouse.migrate()
    page = (Path(__file__).resolve().parent.parent / "docs" / "data-model.md").read_text()
    block = page.split("```sql", 1)[1].split("```", 1)[0]
    queries = [q.strip() for q in block.split(";") if q.strip()]
    assert len(queries) >= 6
    for query in queries:
        sql = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("--"))
        warehouse.fetch_all(sql)


def test_the_nul_screen_reads_only_the_characters_of_the_strings() -> None:
    from nugen_etl.warehouse.staging import may_hold_nul

    held = pa.array(["ab", "c\x00d", "ef"])
    assert may_hold_nul(held) and may_hold_nul(pa.chunked_array([pa.array(["x"]), held]))
    assert not may_hold_nul(held.slice(0, 1)) and not may_hold_nul(held.slice(2, 1))  # NUL outside the slice
    assert may_hold_nul(held.slice(1, 1))
    assert not may_hold_nul(pa.nulls(5, pa.string()))  # its character buffer may hold zero bytes
    assert not may_hold_nul(pa.array([None, "", None], pa.string()))
    assert may_hold_nul(pa.array(["a", "\x00"], pa.large_string()).slice(1))


def _flattened_slot(account: str, snapshot_at: datetime, models: int = 4) -> SlotLoad:
    """A slot load as a run makes it: an answer of the documented shape, classified and flattened."""
    from nugen_etl.records import RawAnswer
    from nugen_etl.transform import answer_to_load

    body = json.dumps(
        {
            "domain_aligned_models": [
                {
                    "id": f"m{i}",
                    "alignment_id": f"a{i}",
                    "usage_count": 10 * i,
                    "performance_metrics": {"accuracy": 0.5 + i / 100, "domain_violations": i},
                    "evaluation_data": {"evaluation_id": f"e{i}", "metrics": {"overall_score": 0.25}},
                }
                for i in range(models)
            ]
        }
    )
    return answer_to_load(
        RawAnswer(
            account_id=account, snapshot_at=snapshot_at, fetched_at=snapshot_at + timedelta(seconds=3), http_status=200, body=body.encode()
        )
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_metric_lists_written_by_flattening_load_as_the_computed_ones(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A load carrying flattening's model_metric_lists stores the same rows as the same load without them
    (the warehouse then computes them from model_metrics); lists that do not hold the long rows' values
    are ignored and computed."""
    given = [_flattened_slot(a, at(1, h)) for a in ("acme", "beta") for h in range(3)]
    assert all("model_metric_lists" in load.tables for load in given)  # type: ignore[operator]
    computed = [
        SlotLoad(ld.run, {k: v for k, v in ld.tables.items() if k != "model_metric_lists"})  # type: ignore[union-attr]
        for ld in given
    ]
    short = [
        SlotLoad(ld.run, {**ld.tables, "model_metric_lists": ld.tables["model_metric_lists"].slice(1)})  # type: ignore[index]
        for ld in given
    ]
    dumps = []
    for name, loads in (("given", given), ("computed", computed), ("short", short)):
        with open_warehouse(fresh_warehouse_url(request, engine, tmp_path / name)) as wh:
            wh.migrate()
            wh.load(loads)
            dumps.append(
                dump(wh)
                | {"model_metrics": wh.fetch_all("SELECT * FROM nugen.model_metrics ORDER BY account_id, snapshot_at, model_id, metric")}
            )
    assert dumps[0] == dumps[1] == dumps[2]
    assert len(dumps[0]["model_metrics"]) == 6 * 4 * 3  # slots x models x numeric leaves (accuracy,
    # domain_violations, overall_score)


def test_duckdb_bulk_loading_checkpoints_once_at_the_end_and_keeps_every_load(tmp_path: Path) -> None:
    from nugen_etl.warehouse.duckdb import BULK_CHECKPOINT_THRESHOLD, DuckDBWarehouse

    loads = [_flattened_slot(a, at(2, h)) for a in ("acme", "beta") for h in range(4)]
    wal = tmp_path / "bulk.duckdb.wal"
    with DuckDBWarehouse(str(tmp_path / "plain.duckdb")) as plain:
        plain.migrate()
        plain.load(loads)
        want = dump(plain)
    with DuckDBWarehouse(str(tmp_path / "bulk.duckdb")) as wh:
        wh.migrate()
        settings = "SELECT current_setting('checkpoint_threshold'), current_setting('threads')"
        default = wh.fetch_all(settings)
        with wh.loading_in_bulk():
            assert wh.fetch_all(settings)[0][0] != default[0][0] and wh.fetch_all(settings)[0][1] == 1
            for load in loads:
                wh.load([load])
            assert wal.exists() and wal.stat().st_size > 0, "committed loads wait in the WAL"
        assert wh.fetch_all(settings) == default
        assert not wal.exists() or wal.stat().st_size == 0, "one checkpoint at the end"
        assert dump(wh) == want
    assert BULK_CHECKPOINT_THRESHOLD.endswith("MB")


def test_duckdb_loads_that_do_not_compact_leave_their_row_groups_to_the_one_that_does(tmp_path: Path) -> None:
    """Each commit here checkpoints (a 1-byte threshold, as a large batch does by itself): with
    ``compact=False`` the checkpoint leaves each batch's partly filled row group as it is; the next
    compacting load merges them all; and the rows are those of a warehouse that compacted every time."""
    from nugen_etl.warehouse.duckdb import DuckDBWarehouse

    loads = [_flattened_slot("acme", at(2, h)) for h in range(4)]

    def row_groups(wh: Warehouse) -> int:
        ((count,),) = wh.fetch_all("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('nugen.model_snapshots')")
        return int(count)

    with DuckDBWarehouse(str(tmp_path / "plain.duckdb")) as plain:
        plain.migrate()
        for load in loads:
            plain.load([load])
        want = dump(plain)
    with DuckDBWarehouse(str(tmp_path / "w.duckdb")) as wh:
        wh.migrate()
        wh.fetch_all("SET checkpoint_threshold = '1B'")
        vacuum = wh.fetch_all("SELECT current_setting('max_vacuum_tasks')")
        for number, load in enumerate(loads[:-1], 1):
            wh.load([load], compact=False)
            assert row_groups(wh) == number
        assert wh.fetch_all("SELECT current_setting('max_vacuum_tasks')") == vacuum != [(0,)], "the setting is the load's alone"
        wh.load(loads[-1:])
        assert row_groups(wh) == 1
        assert dump(wh) == want


def test_duckdb_loads_of_a_bulk_session_killed_before_its_checkpoint_are_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "tests.programs.killed_bulk_session", str(path)], cwd=Path(__file__).parent.parent, timeout=120
    )
    assert done.returncode == -9
    from nugen_etl.warehouse.duckdb import DuckDBWarehouse

    with DuckDBWarehouse(str(path)) as wh:
        assert wh.fetch_all("SELECT count(*), count(DISTINCT snapshot_at) FROM nugen.model_snapshots") == [(12, 3)]
        assert wh.fetch_all("SELECT count(*) FROM nugen.account_runs") == [(3,)]
