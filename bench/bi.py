"""Scenario 8, BI: the dashboard queries over a long history, through the rollup-backed views and through
the pre-rollup ones, on both engines; and the per-slot load cost at that history, rollups included.

The history is generated in SQL (not through the pipeline): the simulator's accounts and models (the same
ids and model keys the measured live slots carry), one row per model per past hour, with per-model usage
counters that grow and reset, status cycles (DEPLOYED -> UNDEPLOYED -> DEPLOYING -> DEPLOYED, the model id
losing and regaining "-deployed"), drifting accuracy, a few failed slots (no snapshot rows) and failure
streaks at the end, a model that appears halfway and one that is retired a while before the end. Then
``Warehouse.rebuild_rollups()``, VACUUM ANALYZE on PostgreSQL, and each dashboard query is timed on
``nugen.*`` (median after a warm-up) and on ``nugen_reference.*`` (tests/reference_views.sql, the views
before the rollups: run ``bi_ref_reps`` times, without warm-up), and the two answers are compared (a
difference is reported in the row and the notes, not raised: the other figures still stand).

The DuckDB file with the history (before the rollups) is cached per size, generator and migration set.
Last, slots are loaded alternately into an empty warehouse and the full one, as in scenario 4.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import ROOT, SEED, T0, Context, median, row
from bench.flat_cost import alternate_slots
from bench.sizes import Sizes
from nugen_etl.simulator import SimulatorState
from nugen_etl.warehouse import Warehouse, open_warehouse
from nugen_etl.warehouse.migrations import discover
from tests.pg_scratch import scratch_pg_database

SCENARIO = "8 bi"
TARGET_MS = 200.0
TARGET_RATIO = 1.3
REFERENCE_SQL = ROOT / "tests" / "reference_views.sql"
HOUR = timedelta(hours=1)
LAST_SLOT = T0 - HOUR  # the history's last hour; live slots start at T0
LAST_DAY = LAST_SLOT.date()


# --- the dashboard queries -------------------------------------------------------------------------


def queries(account_id: str) -> list[tuple[str, str, list[Any]]]:
    """(label, SQL over schema ``{s}``, parameters): written as a BI tool would, dates relative to the end."""
    return [
        (
            "usage trend, all accounts, 30 days",
            "SELECT day, sum(usage_delta) AS usage FROM {s}.model_usage_daily WHERE day >= ? GROUP BY day ORDER BY day",
            [LAST_DAY - timedelta(days=29)],
        ),
        (
            "one account's usage and accuracy, 90 days",
            "SELECT u.day, u.model_key, u.usage_count, u.usage_delta, a.accuracy, a.uncertainty, a.domain_violations "
            "FROM {s}.model_usage_daily AS u JOIN {s}.model_accuracy_daily AS a "
            "ON a.account_id = u.account_id AND a.model_key = u.model_key AND a.day = u.day "
            "WHERE u.account_id = ? AND u.day >= ? ORDER BY u.day, u.model_key",
            [account_id, LAST_DAY - timedelta(days=89)],
        ),
        (
            "present models (models_latest)",
            "SELECT account_id, model_key, model_id, name, status, deployment_status, usage_count, accuracy, "
            "first_seen_at, last_seen_at FROM {s}.models_latest WHERE is_present ORDER BY account_id, model_key",
            [],
        ),
        (
            "account_health",
            "SELECT account_id, last_success_at, last_outcome, consecutive_failures, last_run_at "
            "FROM {s}.account_health ORDER BY account_id",
            [],
        ),
        (
            "status changes, 7 days",
            "SELECT account_id, model_key, changed_at, from_status, to_status, from_deployment_status, "
            "to_deployment_status FROM {s}.model_status_changes WHERE changed_at >= ? "
            "ORDER BY changed_at, account_id, model_key",
            [T0 - timedelta(days=7)],
        ),
    ]


# --- the history -----------------------------------------------------------------------------------


class _Dialect:
    def __init__(self, engine: str) -> None:
        self.engine = engine

    def at(self, hours_back: str) -> str:
        """The timestamptz ``hours_back`` hours before T0."""
        if self.engine == "duckdb":
            return f"(TIMESTAMPTZ '{T0.isoformat()}' - to_hours(CAST({hours_back} AS BIGINT)))"
        return f"(timestamptz '{T0.isoformat()}' - make_interval(hours => CAST({hours_back} AS INTEGER)))"

    def day(self, ts: str) -> str:
        return f"CAST({ts} AS DATE)" if self.engine == "duckdb" else f"CAST({ts} AT TIME ZONE 'UTC' AS DATE)"

    def minutes(self, n: int | str) -> str:
        if self.engine == "duckdb":
            return f"to_minutes(CAST({n} AS BIGINT))"
        return f"make_interval(mins => CAST({n} AS INTEGER))"

    def div(self, a: str, b: str) -> str:
        return f"({a}) // ({b})" if self.engine == "duckdb" else f"({a}) / ({b})"

    def series(self, count: int) -> str:
        if self.engine == "duckdb":
            return f"range({count}) AS g(i)"
        return f"generate_series(CAST(0 AS BIGINT), {count - 1}) AS g(i)"


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, datetime):
        return f"CAST('{v.isoformat()}' AS TIMESTAMPTZ)"
    return "'" + str(v).replace("'", "''") + "'"


_CATALOG_COLUMNS = (
    ("idx", "INTEGER"),
    ("acct_no", "INTEGER"),
    ("account_id", "TEXT"),
    ("i", "INTEGER"),
    ("model_key", "TEXT"),
    ("alignment_id", "TEXT"),
    ("fixed_id", "TEXT"),
    ("name", "TEXT"),
    ("project", "TEXT"),
    ("creator", "TEXT"),
    ("created_date", "TIMESTAMPTZ"),
    ("kind", "INTEGER"),
    ("rate", "BIGINT"),
    ("reset_to", "BIGINT"),
    ("reset_period", "INTEGER"),
    ("reset_phase", "INTEGER"),
    ("cycle_period", "INTEGER"),
    ("cycle_phase", "INTEGER"),
    ("down_hours", "INTEGER"),
    ("a0", "DOUBLE PRECISION"),
    ("wobble_phase", "INTEGER"),
    ("art", "DOUBLE PRECISION"),
    ("last_minutes", "INTEGER"),
    ("born", "INTEGER"),
    ("retired", "INTEGER"),
    ("eval_id", "TEXT"),
    ("eval_status", "TEXT"),
    ("eval_completed_at", "TIMESTAMPTZ"),
    ("downloadable", "BOOLEAN"),
    ("conversations", "BOOLEAN"),
)
_ACCOUNT_COLUMNS = (("acct_no", "INTEGER"), ("account_id", "TEXT"), ("late_born", "INTEGER"), ("retired", "INTEGER"))

# kind: 0 DEPLOYED always, 1 UNDEPLOYED always, 2 EVALUATED / READY always, 3 cycling
# DEPLOYED -> UNDEPLOYED (down_hours - 1) -> DEPLOYING (1 h) -> DEPLOYED, every cycle_period hours.


def _kind(i: int) -> int:
    if i == 1 or i % 6 == 4:
        return 3
    if i % 4 == 3:
        return 1
    if i % 2 == 1:
        return 2
    return 0


def catalog(accounts: int, models: int, hours: int) -> tuple[list[tuple], list[tuple]]:
    """The per-model and per-account parameters of the history (deterministic)."""
    state = SimulatorState(SEED, accounts + 1, models=models, start=T0)
    start = T0 - hours * HOUR
    cycle_base = max(8, min(24 * 20, hours // 6))
    reset_base = max(6, min(24 * 7, hours // 8))
    late_at, retire_at = hours // 2, hours - max(2, min(24 * 30, hours // 10))
    models_rows, account_rows = [], []
    for a, account_id in enumerate(state.account_ids[:accounts], start=1):
        late = models - 2 if a % 3 == 0 and models >= 4 else None  # appears halfway through the history
        retired = models - 3 if a % 5 == 1 and models >= 4 else None  # gone ~30 days before the end
        account_rows.append((a, account_id, late_at if late is not None else None, retire_at if retired is not None else None))
        for spec in state.specs(account_id):
            i = spec.index
            rng = random.Random(f"{SEED}|bi|{account_id}|{i}")
            cycle = cycle_base + rng.randrange(cycle_base)
            created = start - (24 * (i + 1)) * HOUR - timedelta(minutes=rng.randrange(60))
            key = spec.alignment_id or spec.fixed_id
            models_rows.append(
                (
                    (a - 1) * models + i,
                    a,
                    account_id,
                    i,
                    key,
                    spec.alignment_id,
                    spec.fixed_id,
                    spec.name,
                    spec.project,
                    spec.creator,
                    created,
                    _kind(i),
                    spec.rate,
                    spec.reset_to,
                    reset_base + rng.randrange(2 * reset_base),
                    rng.randrange(10_000),
                    cycle,
                    rng.randrange(cycle),
                    max(2, min(cycle // 3, 12 + rng.randrange(48))),
                    spec.a0,
                    rng.randrange(168),
                    spec.response_time,
                    spec.last_used_minutes,
                    late_at if i == late else 0,
                    retire_at if i == retired else None,
                    spec.evaluation_id if i % 3 == 0 else None,
                    ("READY" if (i // 3) % 2 == 0 else "COMPLETED") if i % 3 == 0 else None,
                    created + timedelta(hours=2, minutes=15) if i % 3 == 0 else None,
                    spec.downloadable,
                    spec.conversations,
                )
            )
    return models_rows, account_rows


def _create_table(name: str, columns: Sequence[tuple[str, str]], rows: Sequence[tuple], *, temp: bool) -> list[str]:
    cols = ", ".join(f"{c} {t}" for c, t in columns)
    values = ",\n".join("(" + ", ".join(_lit(v) for v in r) + ")" for r in rows)
    return [f"CREATE {'TEMP ' if temp else ''}TABLE {name} ({cols})", f"INSERT INTO {name} VALUES\n{values}"]


def _outcome(d: _Dialect, acct: str, k: str, hours: int) -> str:
    """The outcome of account number ``acct`` in history hour ``k`` (0 = the first, hours - 1 = the last):
    ~0.4 % failed at random; a failure streak at the end for every 8th account, an auth_failed one for
    another 8th."""
    return (
        f"CASE WHEN ({acct}) % 8 = 4 AND ({k}) >= {hours} - (1 + {d.div(acct, '8')} % 3) THEN 'failed' "
        f"WHEN ({acct}) % 8 = 2 AND ({k}) >= {hours} - 2 THEN 'auth_failed' "
        f"WHEN (({acct}) * 7919 + ({k}) * 104729) % 1009 < 4 THEN 'failed' ELSE 'ok' END"
    )


_SNAPSHOT_COLUMNS = (
    "account_id, model_id, snapshot_at, snapshot_date, fetched_at, model_key, alignment_id, "
    "name, base_model, alignment_project, created_date, status, deployment_status, endpoint, "
    "creator, usage_count, last_used, downloadable, conversation_saving_enabled, accuracy, "
    "uncertainty, domain_violations, average_response_time, pm_accuracy, pm_uncertainty, "
    "pm_domain_violations, pm_average_response_time, eval_id, eval_status, eval_completed_at"
)


def snapshot_insert(
    d: _Dialect, accounts: int, models: int, hours: int, first: int = 0, count: int | None = None, catalog_table: str = "bi_catalog"
) -> str:
    """INSERT ... SELECT of the model_snapshots rows of history hours [first, first + count), hour-major."""
    per_slot = accounts * models
    count = hours - first if count is None else count
    k = f"({first} + {d.div('g.i', str(per_slot))})"
    inner = (
        f"SELECT c.*, {k} AS k, {d.at(f'{hours} - {k}')} AS t, "
        f"({k} + c.cycle_phase) % c.cycle_period AS cyc, "
        f"floor((c.a0 + 0.02 * sin(2 * pi() * ({k} + c.wobble_phase) / 168.0) "
        f"- 0.00001 * (({k} + c.wobble_phase) % 2000)) * 10000 + 0.5) / 10000 AS acc "
        f"FROM {d.series(count * per_slot)} JOIN {catalog_table} AS c ON c.idx = g.i % {per_slot} "
        f"WHERE {_outcome(d, 'c.acct_no', k, hours)} = 'ok' AND c.born <= {k} "
        f"AND (c.retired IS NULL OR {k} < c.retired)"
    )
    deployed = "(c.kind = 0 OR (c.kind = 3 AND c.cyc < c.cycle_period - c.down_hours))"
    status = (
        f"CASE WHEN {deployed} THEN 'DEPLOYED' WHEN c.kind = 1 THEN 'UNDEPLOYED' "
        f"WHEN c.kind = 2 THEN 'EVALUATED' WHEN c.cyc = c.cycle_period - 1 THEN 'DEPLOYING' "
        f"ELSE 'UNDEPLOYED' END"
    )
    deployment = (
        f"CASE WHEN {deployed} THEN 'DEPLOYED' WHEN c.kind = 1 THEN 'UNDEPLOYED' "
        f"WHEN c.kind = 2 THEN 'READY' WHEN c.cyc = c.cycle_period - 1 THEN 'DEPLOYING' "
        f"ELSE 'UNDEPLOYED' END"
    )
    model_id = f"coalesce(c.fixed_id, CASE WHEN {deployed} THEN c.alignment_id || '-deployed' ELSE c.alignment_id END)"
    usage = "CASE WHEN c.kind IN (1, 2) THEN 0 ELSE c.reset_to + c.rate * ((c.k + c.reset_phase) % c.reset_period) END"
    uncertainty = "floor(0.8 * (1 - c.acc) * 10000 + 0.5) / 10000"
    violations = "CAST(floor(30 * (1 - c.acc) + 0.5) AS BIGINT)"
    art = f"CASE WHEN {deployed} THEN c.art ELSE 0 END"
    return (
        f"INSERT INTO nugen.model_snapshots ({_SNAPSHOT_COLUMNS}) SELECT c.account_id, {model_id}, c.t, "
        f"{d.day('c.t')}, c.t + {d.minutes(3)}, c.model_key, c.alignment_id, c.name, 'nugen-flash-instruct', "
        f"c.project, c.created_date, {status}, {deployment}, "
        f"CASE WHEN {deployed} THEN 'https://api.nugen.in/api/v3/inference/completions/' || {model_id} ELSE '' END, "
        f"c.creator, {usage}, CASE WHEN ({usage}) > 0 THEN c.t - {d.minutes('c.last_minutes')} END, "
        f"c.downloadable, c.conversations, c.acc, {uncertainty}, {violations}, {art}, c.acc, {uncertainty}, "
        f"{violations}, {art}, c.eval_id, c.eval_status, c.eval_completed_at FROM ({inner}) AS c"
    )


def runs_insert(d: _Dialect, accounts: int, models: int, hours: int) -> str:
    k = d.div("g.i", str(accounts))
    acct = f"(1 + g.i % {accounts})"
    inner = (
        f"SELECT a.account_id, {k} AS k, {d.at(f'{hours} - {k}')} AS t, {_outcome(d, 'a.acct_no', k, hours)} "
        f"AS outcome, {models} - CASE WHEN a.late_born IS NOT NULL AND {k} < a.late_born THEN 1 ELSE 0 END "
        f"- CASE WHEN a.retired IS NOT NULL AND {k} >= a.retired THEN 1 ELSE 0 END AS model_count "
        f"FROM {d.series(hours * accounts)} JOIN bi_accounts AS a ON a.acct_no = {acct}"
    )
    return (
        "INSERT INTO nugen.account_runs (account_id, snapshot_at, outcome, http_status, model_count, "
        "quarantined_count, coerced_count, attempts, fetched_at, error) "
        "SELECT r.account_id, r.t, r.outcome, CASE r.outcome WHEN 'ok' THEN 200 WHEN 'auth_failed' THEN 401 "
        "ELSE 503 END, CASE WHEN r.outcome = 'ok' THEN r.model_count ELSE 0 END, 0, 0, "
        "CASE WHEN r.outcome = 'failed' THEN 2 ELSE 1 END, "
        f"r.t + {d.minutes(3)}, CASE r.outcome WHEN 'ok' THEN NULL WHEN 'auth_failed' THEN 'HTTP 401' "
        f"ELSE 'HTTP 503 after 2 attempts' END FROM ({inner}) AS r"
    )


def _cache_key(accounts: int, models: int, hours: int) -> str:
    """What the cached DuckDB file depends on: the history's SQL and the migrations it was made under."""
    d = _Dialect("duckdb")
    model_rows, account_rows = catalog(accounts, models, hours)
    h = hashlib.sha256()
    for part in (
        *_create_table("bi_catalog", _CATALOG_COLUMNS, model_rows, temp=True),
        *_create_table("bi_accounts", _ACCOUNT_COLUMNS, account_rows, temp=True),
        runs_insert(d, accounts, models, hours),
        snapshot_insert(d, accounts, models, hours),
        *(m.sql for m in discover("duckdb")),
    ):
        h.update(part.encode())
    return h.hexdigest()[:16]


# --- running it ------------------------------------------------------------------------------------


def _normal(rows: list[tuple]) -> list[tuple]:
    def one(v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, (int, float, Decimal)):
            return round(float(v), 6)
        return v

    return [tuple(one(v) for v in r) for r in rows]


def _time(wh: Warehouse, sql: str, params: list[Any]) -> tuple[float, list[tuple]]:
    started = time.perf_counter()
    rows = wh.fetch_all(sql, params)
    return time.perf_counter() - started, rows


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    n, m, hours = sizes.bi_accounts, sizes.bi_models, sizes.bi_hours
    state = SimulatorState(SEED, n + 1, models=m, start=T0)
    accounts = state.account_ids[:n]
    out: dict[str, Any] = {"accounts": n, "models": m, "hours": hours, "engines": {}}
    rows: list[dict[str, Any]] = []
    engines = ["duckdb"] + (["postgresql"] if ctx.pg_url else [])
    if not ctx.pg_url:
        ctx.notes.append("bi: PostgreSQL skipped (no PostgreSQL URL)")
    for engine in engines:
        res: dict[str, Any] = {}
        out["engines"][engine] = res
        with _full(ctx, engine, n, m, hours) as (full, build):
            res.update(build)
            count, runs = build["history_rows"], build["run_rows"]
            ctx.log(
                f"  bi {engine}: {count:,} history rows, {runs:,} runs in {build['build_s']:.1f} s"
                + (" (cached)" if build.get("cached") else "")
            )
            how = "cached file copied" if build.get("cached") else build["method"]
            rows.append(
                row(
                    SCENARIO,
                    f"{engine}: history build ({count:,} snapshot rows, {runs:,} account runs)",
                    round(build["build_s"], 1),
                    "s",
                    note=how + (f"; built in {build['built_s']:.0f} s" if build.get("cached") else ""),
                )
            )
            started = time.perf_counter()
            full.rebuild_rollups()
            res["rollups_s"] = time.perf_counter() - started
            if engine == "postgresql":
                started = time.perf_counter()
                full.fetch_all("VACUUM ANALYZE")
                res["vacuum_analyze_s"] = time.perf_counter() - started
            ctx.log(
                f"  bi {engine}: rebuild_rollups in {res['rollups_s']:.1f} s"
                + (f", VACUUM ANALYZE {res['vacuum_analyze_s']:.1f} s" if engine == "postgresql" else "")
            )
            rows.append(
                row(
                    SCENARIO,
                    f"{engine}: rebuild_rollups over the history",
                    round(res["rollups_s"], 1),
                    "s",
                    note=f"then VACUUM ANALYZE {res['vacuum_analyze_s']:.0f} s" if engine == "postgresql" else "",
                )
            )
            full.fetch_all(REFERENCE_SQL.read_text())
            res["queries"] = {}
            for label, sql, params in queries(accounts[0]):
                q = _measure(full, sql, params, sizes)
                res["queries"][label] = q
                ms, ref_ms = q["median_s"] * 1000, q["reference_median_s"] * 1000
                ctx.log(
                    f"  bi {engine}: {label}: {ms:.1f} ms (pre-rollup {ref_ms:,.0f} ms), {q['rows']} rows, same answer: {q['same_answer']}"
                )
                if not q["same_answer"]:
                    ctx.notes.append(f"bi {engine}: '{label}' answers differ from the pre-rollup views")
                ref_runs = len(q["reference_s"])
                rows.append(
                    row(
                        SCENARIO,
                        f"{engine}: {label}",
                        round(ms, 1),
                        "ms",
                        target=f"<= {TARGET_MS:.0f} ms",
                        met=ms <= TARGET_MS and q["same_answer"],
                        note=f"pre-rollup {ref_ms:,.0f} ms ({ref_runs} run{'s' if ref_runs > 1 else ''}, no warm-up); "
                        f"median of {len(q['times_s'])} after a warm-up; {q['rows']:,} rows, "
                        + ("same answer" if q["same_answer"] else "ANSWER DIFFERS from pre-rollup"),
                    )
                )
            with _empty(ctx, engine) as empty:
                t_empty, t_full = alternate_slots(state, accounts, sizes.bi_slot_reps, empty, full)
            e, f = median(t_empty), median(t_full)
            ratio = f / e
            res.update(empty_s=t_empty, full_s=t_full, ratio=ratio)
            ctx.log(f"  bi {engine}: slot empty {e * 1000:.0f} ms, full {f * 1000:.0f} ms, ratio {ratio:.2f}")
            rows.append(
                row(
                    SCENARIO,
                    f"{engine}: slot into {count:,} rows vs empty, rollups included ({n} x {m})",
                    round(ratio, 2),
                    "x",
                    target=f"<= {TARGET_RATIO}x",
                    met=ratio <= TARGET_RATIO,
                    note=f"{f * 1000:.0f} ms vs {e * 1000:.0f} ms, median of {len(t_full)}",
                )
            )
    out["rows"] = rows
    return out


def _measure(wh: Warehouse, sql: str, params: list[Any], sizes: Sizes) -> dict[str, Any]:
    _, answer = _time(wh, sql.format(s="nugen"), params)  # warm-up
    times = [_time(wh, sql.format(s="nugen"), params)[0] for _ in range(sizes.bi_reps)]
    ref_times, ref_answer = [], None
    for _ in range(sizes.bi_ref_reps):
        t, ref_answer = _time(wh, sql.format(s="nugen_reference"), params)
        ref_times.append(t)
    same = ref_answer is not None and _normal(answer) == _normal(ref_answer)
    return {
        "times_s": times,
        "median_s": median(times),
        "reference_s": ref_times,
        "reference_median_s": median(ref_times),
        "rows": len(answer),
        "same_answer": same,
    }


def _fill(wh: Warehouse, engine: str, n: int, m: int, hours: int, url: str | None = None) -> float:
    """Write the history into ``wh``; return the seconds it took.

    PostgreSQL runs no INSERT in parallel, so its snapshot rows are inserted in chunks of hours by one
    connection per core (2 connections: ~30 % less time than one INSERT ... SELECT, ~15 % less than
    a COPY ... TO STDOUT piped into COPY ... FROM STDIN, at 2 M rows)."""
    started = time.perf_counter()
    d = _Dialect(engine)
    model_rows, account_rows = catalog(n, m, hours)
    temp = engine == "duckdb"  # PostgreSQL's other connections must see the catalog tables
    for sql in (
        *_create_table("bi_catalog", _CATALOG_COLUMNS, model_rows, temp=temp),
        *_create_table("bi_accounts", _ACCOUNT_COLUMNS, account_rows, temp=temp),
        runs_insert(d, n, m, hours),
    ):
        wh.fetch_all(sql)
    if engine == "duckdb":
        wh.fetch_all(snapshot_insert(d, n, m, hours))
    else:
        assert url is not None
        wh.fetch_all("ANALYZE bi_catalog")
        _parallel_chunks(
            url, [snapshot_insert(d, n, m, hours, first, min(PG_CHUNK_HOURS, hours - first)) for first in range(0, hours, PG_CHUNK_HOURS)]
        )
    wh.fetch_all("DROP TABLE bi_catalog")
    wh.fetch_all("DROP TABLE bi_accounts")
    if engine == "duckdb":
        wh.fetch_all("CHECKPOINT")
    return time.perf_counter() - started


PG_CHUNK_HOURS = 250


def _parallel_chunks(url: str, statements: list[str]) -> None:
    import psycopg

    workers = max(1, min(len(statements), os.cpu_count() or 1))
    errors: list[BaseException] = []

    def work(mine: list[str]) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET TIME ZONE 'UTC'")
                for sql in mine:
                    if errors:
                        return
                    conn.execute(sql)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(statements[i::workers],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _counts(wh: Warehouse) -> dict[str, int]:
    ((count,),) = wh.fetch_all("SELECT count(*) FROM nugen.model_snapshots")
    ((runs,),) = wh.fetch_all("SELECT count(*) FROM nugen.account_runs")
    return {"history_rows": count, "run_rows": runs}


METHOD = "one INSERT ... SELECT per table"
PG_METHOD = f"INSERT ... SELECT of {PG_CHUNK_HOURS} h chunks over {os.cpu_count() or 1} connections; account_runs in one"


@contextmanager
def _full(ctx: Context, engine: str, n: int, m: int, hours: int) -> Iterator[tuple[Warehouse, dict[str, Any]]]:
    """A migrated warehouse holding the history (not yet rolled up) and how it was built.

    The DuckDB file is cached as built, keyed by the sizes, the history SQL and the migrations; a cached
    copy is migrated on opening (a newer migration applies to it as to any warehouse)."""
    if engine == "postgresql":
        assert ctx.pg_url is not None
        with scratch_pg_database(ctx.pg_url, "nugen_bench_bi_full") as url:
            wh = open_warehouse(url)
            try:
                wh.migrate()
                build_s = _fill(wh, engine, n, m, hours, url)
                yield wh, {"build_s": build_s, "method": PG_METHOD, "cached": False, **_counts(wh)}
            finally:
                wh.close()
        return
    path = ctx.work / "bi-full.duckdb"
    cached = ctx.cache / f"bi-duckdb-a{n}-m{m}-h{hours}-{_cache_key(n, m, hours)}.duckdb"
    meta = cached.with_suffix(".json")
    try:
        if cached.exists() and meta.exists():
            started = time.perf_counter()
            shutil.copyfile(cached, path)
            info = {"build_s": time.perf_counter() - started, "cached": True, **json.loads(meta.read_text())}
        else:
            with open_warehouse(f"duckdb:///{path}") as wh:
                wh.migrate()
                built_s = _fill(wh, engine, n, m, hours)
                made = {"built_s": built_s, "method": METHOD, **_counts(wh)}
            for stale in ctx.cache.glob(f"bi-duckdb-a{n}-m{m}-h{hours}-*"):  # made by other code: ~1 GB each
                stale.unlink(missing_ok=True)
            tmp = cached.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(cached)
            meta.write_text(json.dumps(made))
            info = {"build_s": built_s, "cached": False, **made}
        with open_warehouse(f"duckdb:///{path}") as wh:
            wh.migrate()
            yield wh, info
    finally:
        path.unlink(missing_ok=True)
        Path(f"{path}.wal").unlink(missing_ok=True)


@contextmanager
def _empty(ctx: Context, engine: str) -> Iterator[Warehouse]:
    if engine == "postgresql":
        assert ctx.pg_url is not None
        with scratch_pg_database(ctx.pg_url, "nugen_bench_bi_empty") as url, open_warehouse(url) as wh:
            wh.migrate()
            yield wh
        return
    path = ctx.work / "bi-empty.duckdb"
    try:
        with open_warehouse(f"duckdb:///{path}") as wh:
            wh.migrate()
            yield wh
    finally:
        path.unlink(missing_ok=True)
        Path(f"{path}.wal").unlink(missing_ok=True)
