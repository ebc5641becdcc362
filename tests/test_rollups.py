"""The BI views read rollups kept at load time; they must equal the full-history views they replaced.

tests/reference_views.sql holds those views (migration 002's SQL) in schema ``nugen_reference``. A
property test loads random histories of API answers (flattened by the product: usage as a number,
a string or NULL) in random order, with reruns, failed reruns, backfills of
earlier days, deploy id changes, counter resets, NULL usage, records sharing a key, gaps longer than
the maintenance's look-back window, and accounts that go empty or fail; after every load every view
equals its reference, on both engines, and a rebuild from the snapshots leaves the rollups unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nugen_etl.records import RawAnswer, SlotLoad
from nugen_etl.transform import answer_to_load
from nugen_etl.warehouse import Warehouse, migrations, open_warehouse, rollups
from nugen_etl.warehouse.rollup_batch import batch_rollups
from nugen_etl.warehouse.rollups import LOOKBACK_DAYS
from nugen_etl.warehouse.staging import stage_batch

from .conftest import ENGINES, fresh_warehouse_url
from .test_warehouse import UTC, _apply_migrations_before, _execute, failed_slot, ok_slot

REFERENCE_SQL = Path(__file__).with_name("reference_views.sql").read_text()
BI_VIEWS = ("models_latest", "model_usage_daily", "model_accuracy_daily", "model_status_changes", "account_health")
ROLLUPS = ("rollup_model_daily", "rollup_status_changes", "rollup_models_current", "rollup_account_health")
DATA = ("model_snapshots", "model_metric_lists", "quarantined_records", "evaluations", "account_runs")


def install_reference(wh: Warehouse) -> None:
    if wh.engine == "postgresql":
        _execute(wh, "DROP SCHEMA IF EXISTS nugen_reference CASCADE")
    _execute(wh, REFERENCE_SQL)


def normal(value: object) -> object:
    """PostgreSQL's SUM(bigint) is numeric; the rollup stores bigint. Same number, same value."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def rows_of(wh: Warehouse, relation: str) -> Counter:
    return Counter(tuple(normal(v) for v in row) for row in wh.fetch_all(f"SELECT * FROM {relation}"))


def assert_views_equal_reference(wh: Warehouse, context: str = "") -> None:
    for view in BI_VIEWS:
        got, want = rows_of(wh, f"nugen.{view}"), rows_of(wh, f"nugen_reference.{view}")
        assert got == want, (
            f"{wh.engine} {view} {context}: only in the rollup view {sorted(got - want, key=repr)}, "
            f"only in the reference {sorted(want - got, key=repr)}"
        )


def rollup_contents(wh: Warehouse) -> dict[str, Counter]:
    return {name: rows_of(wh, f"nugen.{name}") for name in ROLLUPS}


@pytest.fixture(params=ENGINES)
def bi_warehouse(request: pytest.FixtureRequest, tmp_path: Path):
    with open_warehouse(fresh_warehouse_url(request, request.param, tmp_path)) as wh:
        wh.migrate()
        install_reference(wh)
        yield wh


def clear(wh: Warehouse) -> None:
    for table in (*DATA, *ROLLUPS):
        _execute(wh, f"DELETE FROM nugen.{table}")


# --- random histories ------------------------------------------------------------------------------

T0 = datetime(2024, 3, 1, tzinfo=UTC)
# Days far enough apart that some previous/next observed days lie beyond the look-back window.
DAYS = (0, 1, 2, 3, 3 + LOOKBACK_DAYS + 2, 4 + LOOKBACK_DAYS + 2, 6 + 3 * LOOKBACK_DAYS)
HOURS = (0, 7, 23)
SLOTS = [T0 + timedelta(days=d, hours=h) for d in DAYS for h in HOURS]
ACCOUNTS = ("acct-a", "acct-b")
KEYS = ("align-1", "align-2", "model-3")  # model-3 has no alignment_id: its id is its key
STATUSES = ("READY", "DEPLOYED", "FAILED")
DEPLOYMENTS = ("DEPLOYED", "UNDEPLOYED", None)


@st.composite
def records(draw: st.DrawFn, key: str) -> list[dict]:
    """One model_key's records in one API answer: usually one, sometimes a deploy's two ids sharing it."""
    ids = [key] if key.startswith("model-") else draw(st.sampled_from([[key], [f"{key}-deployed"], [key, f"{key}-deployed"]]))
    out = []
    for model_id in ids:
        usage = draw(
            st.none()
            | st.integers(0, 60)
            | st.just(7)
            | st.integers(0, 60).map(str)  # resets and repeats
            | st.just("n/a")
        )
        out.append(
            {
                "id": model_id,
                "alignment_id": None if key.startswith("model-") else key,
                "name": f"{model_id} name",
                "usage_count": usage,
                "status": draw(st.sampled_from(STATUSES)),
                "deployment_status": draw(st.sampled_from(DEPLOYMENTS)),
                "performance_metrics": {
                    "accuracy": draw(st.none() | st.floats(0, 1, allow_nan=False).map(lambda a: round(a, 3))),
                    "uncertainty": draw(st.none() | st.just(0.1)),
                    "domain_violations": draw(st.none() | st.integers(0, 3)),
                },
            }
        )
    return out


def answer(account: str, slot: datetime, status: int, body: object) -> SlotLoad:
    """What the pipeline loads for one API answer: classified and flattened by the product's own code."""
    return answer_to_load(
        RawAnswer(
            account_id=account, snapshot_at=slot, fetched_at=slot + timedelta(minutes=2), http_status=status, body=json.dumps(body).encode()
        )
    )


@st.composite
def slot_loads(draw: st.DrawFn, account: str | None = None, slot: datetime | None = None) -> SlotLoad:
    account = draw(st.sampled_from(ACCOUNTS)) if account is None else account
    slot = draw(st.sampled_from(SLOTS)) if slot is None else slot
    kind = draw(st.sampled_from(["ok", "ok", "ok", "empty", "failed", "auth_failed"]))
    if kind == "failed":
        return answer(account, slot, 503, {"detail": "unavailable"})
    if kind == "auth_failed":
        return answer(account, slot, 401, {"detail": "bad key"})
    if kind == "empty":
        return answer(account, slot, 404, {"detail": "No aligned models found"})
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    return answer(account, slot, 200, {"domain_aligned_models": [r for key in keys for r in draw(records(key))]})


@st.composite
def whole_days(draw: st.DrawFn) -> list[SlotLoad]:
    """Every slot of one account's day in one batch, as a backfill loads it (the rollups of such a day
    come from the batch itself when the warehouse holds no other slot of it)."""
    account, day = draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(DAYS))
    loads = []
    for hour in HOURS:
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
        loads.append(
            answer(
                account,
                T0 + timedelta(days=day, hours=hour),
                200,
                {"domain_aligned_models": [r for key in keys for r in draw(records(key))]},
            )
        )
    return loads


histories = st.lists(st.lists(slot_loads(), min_size=1, max_size=3) | whole_days(), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=histories)
def test_views_over_rollups_equal_the_full_history_views_after_every_load(bi_warehouse: Warehouse, batches: list[list[SlotLoad]]) -> None:
    load_checking_each(bi_warehouse, batches)


def load_checking_each(wh: Warehouse, batches: list[list[SlotLoad]]) -> None:
    """Load the batches into the cleared warehouse; after each the views equal the reference, and at
    the end a rebuild from the snapshots leaves the rollups unchanged."""
    clear(wh)
    for number, batch in enumerate(batches, 1):
        wh.load(batch)
        assert_views_equal_reference(wh, f"after load {number} of {len(batches)}")
    maintained = rollup_contents(wh)
    wh.rebuild_rollups()
    assert rollup_contents(wh) == maintained
    assert_views_equal_reference(wh, "after the rebuild")


@st.composite
def hourly_runs(draw: st.DrawFn) -> list[list[SlotLoad]]:
    """Slots loaded in time order, a batch per slot of one or both accounts, as live runs load them;
    sometimes a rerun of the slot just loaded (which replaces rows: the full upkeep's case)."""
    batches = []
    for slot in sorted(draw(st.lists(st.sampled_from(SLOTS), min_size=1, max_size=10, unique=True))):
        accounts = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=2, unique=True))
        batches.append([draw(slot_loads(account, slot)) for account in accounts])
        if draw(st.integers(0, 5)) == 0:
            batches.append([draw(slot_loads(accounts[0], slot))])
    return batches


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=hourly_runs())
def test_hourly_runs_in_time_order_keep_the_rollups_exact_by_appending(
    bi_warehouse: Warehouse, batches: list[list[SlotLoad]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that only appends the newest observations takes the short upkeep
    (``rollups.appending_statements``); after every load the views equal the reference and the
    rollups equal a rebuild from the snapshots."""
    appended = []
    real = rollups.appending_statements
    with monkeypatch.context() as patch:
        patch.setattr(rollups, "appending_statements", lambda *a, **k: appended.append(a) or real(*a, **k))
        load_checking_each(bi_warehouse, batches)
    first_has_keys = any(load.tables and load.tables["model_snapshots"].num_rows for load in batches[0])
    if first_has_keys:  # the first load into an empty warehouse appends, unless records share a key
        shared = any(
            len(set(load.tables["model_snapshots"]["model_key"].to_pylist())) < load.tables["model_snapshots"].num_rows
            for load in batches[0]
            if load.tables
        )
        assert appended or shared, "the first batch into an empty warehouse took the full upkeep"


def test_a_batchs_own_rollups_cover_the_days_of_the_common_shape_only() -> None:
    """Days whose snapshots hold two records of one key, or a usage_count whose sums could overflow,
    are left to the SQL path; the others come from the batch."""

    def model(model_id: str, usage: int) -> dict:
        return {"id": model_id, "alignment_id": "k", "usage_count": usage, "status": "READY"}

    loads = [answer("plain", T0 + timedelta(hours=h), 200, {"domain_aligned_models": [model("m", h)]}) for h in HOURS]
    loads.append(answer("shared", T0, 200, {"domain_aligned_models": [model("m", 1), model("m-deployed", 2)]}))
    loads.append(answer("huge", T0, 200, {"domain_aligned_models": [model("m", 1 << 50)]}))
    loads.append(answer("huge", T0 + timedelta(days=1), 200, {"domain_aligned_models": [model("m", 5)]}))
    own = batch_rollups(stage_batch(loads).tables["stg_model_snapshots"])
    assert sorted(own.days.to_pylist(), key=lambda r: (r["account_id"], r["day"])) == [
        {"account_id": "huge", "day": (T0 + timedelta(days=1)).date(), "snapshot_rows": 1},
        {"account_id": "plain", "day": T0.date(), "snapshot_rows": len(HOURS)},
    ]
    plain = [r for r in own.daily.to_pylist() if r["account_id"] == "plain"]
    usages = [h for h in HOURS]
    assert [(r["observations"], r["first_usage_count"], r["usage_count"], r["usage_delta_within_day"]) for r in plain] == [
        (len(HOURS), usages[0], usages[-1], sum(b - a for a, b in zip(usages, usages[1:], strict=False)))
    ]


def test_a_failed_rerun_retires_nothing_and_a_late_backfill_fixes_the_next_day(bi_warehouse: Warehouse) -> None:
    """Hand-picked order: day 2 arrives before day 1; day 1 then changes day 2's first usage_delta and its
    first status change; a failed rerun of day 2 keeps day 2's success."""
    wh = bi_warehouse
    model = {"model_id": "m", "alignment_id": "k", "status": "READY", "deployment_status": "DEPLOYED"}
    wh.load([ok_slot("acct", T0 + timedelta(days=1), [{**model, "usage_count": 15, "status": "DEPLOYED"}])])
    ((delta,),) = wh.fetch_all("SELECT usage_delta FROM nugen.model_usage_daily")
    assert delta is None  # its first observation: no pair yet
    wh.load([ok_slot("acct", T0, [{**model, "usage_count": 10}])])
    assert wh.fetch_all("SELECT day, usage_delta FROM nugen.model_usage_daily ORDER BY day") == [
        (T0.date(), None),
        ((T0 + timedelta(days=1)).date(), 15 - 10),
    ]
    assert wh.fetch_all("SELECT changed_at, from_status, to_status FROM nugen.model_status_changes") == [
        (T0 + timedelta(days=1), "READY", "DEPLOYED")
    ]
    wh.load([failed_slot("acct", T0 + timedelta(days=1))])
    assert wh.fetch_all("SELECT last_outcome, consecutive_failures FROM nugen.account_health") == [("ok", 0)]
    assert wh.fetch_all("SELECT is_present FROM nugen.models_latest") == [(True,)]
    assert_views_equal_reference(wh)


def test_consecutive_failures_follow_the_last_success_whatever_the_load_order(bi_warehouse: Warehouse) -> None:
    """The health upkeep's failure count: a first load of failures, a batch whose success is the newest
    run, a failure after it, a backfilled older success (changes nothing) and a success between failures."""
    wh = bi_warehouse
    model = [{"model_id": "m", "alignment_id": "k", "usage_count": 1}]

    def health() -> list[tuple[object, ...]]:
        return wh.fetch_all("SELECT last_success_at, last_outcome, consecutive_failures FROM nugen.account_health")

    wh.load([failed_slot("acct", T0 + timedelta(hours=1)), failed_slot("acct", T0 + timedelta(hours=2))])
    assert health() == [(None, "failed", 2)]  # a first load: no success yet
    wh.load([ok_slot("acct", T0 + timedelta(hours=3), model), failed_slot("acct", T0 + timedelta(hours=4))])
    assert health() == [(T0 + timedelta(hours=3), "failed", 1)]  # the batch's success is newest
    wh.load([failed_slot("acct", T0 + timedelta(hours=5))])
    assert health() == [(T0 + timedelta(hours=3), "failed", 2)]  # no new success
    wh.load([ok_slot("acct", T0, model)])
    assert health() == [(T0 + timedelta(hours=3), "failed", 2)]  # a backfilled older success changes nothing
    wh.load([ok_slot("acct", T0 + timedelta(hours=4, minutes=30), model)])
    assert health() == [(T0 + timedelta(hours=4, minutes=30), "failed", 1)]  # a success between failures
    assert_views_equal_reference(wh)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_migration_builds_the_rollups_of_an_existing_warehouse(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A warehouse at 006 holding history gets exact rollups from migration 007, in its transaction."""
    loads = [
        ok_slot(a, T0 + timedelta(hours=h), [{"model_id": "m", "alignment_id": "k", "usage_count": h * 3 % 7, "status": STATUSES[h % 3]}])
        for a in ACCOUNTS
        for h in range(0, 72, 5)
    ] + [failed_slot("acct-a", T0 + timedelta(hours=80))]
    with open_warehouse(fresh_warehouse_url(request, engine, tmp_path / "old")) as wh:
        _apply_migrations_before(wh, "007")
        # The 006 load path: the same statements without the rollups (which do not exist yet).
        with open_warehouse(fresh_warehouse_url(request, engine, tmp_path / "donor")) as donor:
            donor.migrate()
            donor.load(loads)
            for table in ("model_snapshots", "account_runs"):
                rows = donor.fetch_all(f"SELECT * FROM nugen.{table}")
                marks = ", ".join(["?"] * len(rows[0]))
                for row in rows:
                    _execute(wh, f"INSERT INTO nugen.{table} VALUES ({marks})", row)
        applied = wh.migrate()
        assert "007" in applied
        install_reference(wh)
        assert wh.fetch_all("SELECT count(*) FROM nugen.rollup_model_daily")[0][0] > 0
        assert_views_equal_reference(wh)


def test_rebuild_catches_up_rows_loaded_by_other_means(bi_warehouse: Warehouse) -> None:
    wh = bi_warehouse
    wh.load([ok_slot("acct", T0, [{"model_id": "m", "usage_count": 1}])])
    _execute(
        wh,
        "INSERT INTO nugen.model_snapshots (account_id, model_id, snapshot_at, snapshot_date, model_key, "
        "usage_count, status) VALUES ('acct', 'm', ?, ?, 'm', 9, 'READY')",
        [T0 + timedelta(hours=1), T0.date()],
    )
    _execute(wh, "INSERT INTO nugen.account_runs (account_id, snapshot_at, outcome) VALUES ('acct', ?, 'ok')", [T0 + timedelta(hours=1)])
    with pytest.raises(AssertionError):
        assert_views_equal_reference(wh)  # the load path never saw these rows
    wh.rebuild_rollups()
    assert_views_equal_reference(wh)
    assert wh.fetch_all("SELECT usage_count, usage_delta FROM nugen.model_usage_daily") == [(9, 8)]


def test_the_follow_up_of_the_rollup_migration_is_the_rebuild() -> None:
    (rollup,) = [m for m in migrations.discover("duckdb") if m.version == "007"]
    from nugen_etl.warehouse import rollups

    assert migrations.follow_ups(rollup) == rollups.rebuild_statements()


# --- PostgreSQL: the dashboard queries read the rollups through their indexes --------------------

DASHBOARD_QUERIES = {
    "usage trend, all accounts, 30 days": (
        "SELECT day, SUM(usage_delta) FROM nugen.model_usage_daily WHERE day >= DATE '2024-12-01' - 30 GROUP BY day ORDER BY day",
        "rollup_model_daily_day_idx",
    ),
    "one account's usage and accuracy, 90 days": (
        "SELECT u.day, u.model_key, u.usage_delta, a.accuracy FROM nugen.model_usage_daily AS u "
        "JOIN nugen.model_accuracy_daily AS a USING (account_id, model_key, day) "
        "WHERE u.account_id = 'acct-7' AND u.day >= DATE '2024-12-01' - 90 ORDER BY u.day",
        "rollup_model_daily_pkey",
    ),
    "present models": ("SELECT account_id, model_key, name, usage_count FROM nugen.models_latest WHERE is_present", None),
    "account health": ("SELECT * FROM nugen.account_health ORDER BY consecutive_failures DESC", None),
    "status changes, 7 days": (
        "SELECT * FROM nugen.model_status_changes WHERE changed_at >= TIMESTAMPTZ '2024-12-01 00:00Z' - INTERVAL '7 days' "
        "ORDER BY changed_at",
        "rollup_status_changes_changed_at_idx",
    ),
}


@pytest.mark.postgres
def test_pg_dashboard_queries_read_only_the_rollups_through_their_indexes(pg_url: str) -> None:
    """On a year of 4-hourly history (20 accounts x 5 models), the dashboard queries touch no history
    table and the date-bounded and one-account ones use the rollups' indexes."""
    import psycopg

    with open_warehouse(pg_url) as wh:
        wh.migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO nugen.model_snapshots (account_id, model_id, snapshot_at, snapshot_date, model_key, "
            " usage_count, status, deployment_status, accuracy) "
            "SELECT 'acct-' || a, 'model-' || m, ts, (ts AT TIME ZONE 'UTC')::date, 'model-' || m, "
            " (extract(epoch FROM ts)::bigint / 3600) % (100 + m), "
            " CASE WHEN (extract(epoch FROM ts)::bigint / 3600 + a) % 97 < 50 THEN 'READY' ELSE 'DEPLOYED' END, "
            " 'DEPLOYED', 0.5 + m / 100.0 "
            "FROM generate_series(1, 20) AS a, generate_series(1, 5) AS m, "
            " generate_series(timestamptz '2024-01-01 00:00Z', timestamptz '2024-12-01 20:00Z', interval '4 hours') AS ts"
        )
        conn.execute(
            "INSERT INTO nugen.account_runs (account_id, snapshot_at, outcome) "
            "SELECT DISTINCT account_id, snapshot_at, 'ok' FROM nugen.model_snapshots"
        )
    with open_warehouse(pg_url) as wh:
        wh.rebuild_rollups()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        ((days,),) = conn.execute("SELECT count(*) FROM nugen.rollup_model_daily").fetchall()
        assert days == 20 * 5 * 336
        for name, (query, index) in DASHBOARD_QUERIES.items():
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query))
            for history in ("model_snapshots", "account_runs", "model_metric_lists"):
                assert f" {history} " not in plan and not plan.endswith(f" {history}"), (name, plan)
            if index is not None:
                assert "Seq Scan on rollup" not in plan, (name, plan)
                assert index in plan, (name, plan)
