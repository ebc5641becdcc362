"""The rollups the BI views read, kept exact inside each load's transaction, and their rebuild.

Four tables in schema ``nugen`` (DDL and comments: ``nugen_etl/sql/007_rollups.sql``; grain and definitions:
docs/data-model.md):

- ``rollup_model_daily``: one row per (account_id, model_key, day): the day's observations, its
  first and last snapshot, usage at both ends, the usage delta within the day and in total, and the
  fields of the day's last snapshot (``model_key_snapshots`` semantics: usage summed over the records
  sharing the key, the other fields from the greatest model_id);
- ``rollup_status_changes``: one row per observation whose status or deployment_status differs from
  the model_key's previous observation;
- ``rollup_models_current``: one row per (account_id, model_key): its last day's row plus
  first_seen_at / last_seen_at;
- ``rollup_account_health``: one row per account seen in account_runs.

A load replaces whole slots, so it recomputes everything the replaced and the new rows can change:
the touched (account_id, model_key, day) rows from their snapshots, then, for those days and the
next observed day after each, the part that depends on the previous observed day (the first
usage_delta pair and the first status change), then the current row of each touched model_key and
the health of each account in the batch. Searches for a previous or next observed day look within
``LOOKBACK_DAYS`` of the batch's days first (DuckDB prunes that range by zone maps; PostgreSQL
walks its keys) and fall back to the whole history only for model_keys whose current row says they
reach past that window. Rows loaded by other means are caught up with :func:`rebuild_statements`.

Invariant the rollups rely on, which flattening guarantees: ``snapshot_date`` is the UTC date of
``snapshot_at``, and model_key is never NULL (rows with a NULL model_key are left out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

LOOKBACK_DAYS = 7

# The fields of a model_key's snapshot that the daily and current rows carry from its last snapshot
# (model_key_snapshots' columns, usage_count apart).
_SNAPSHOT_FIELDS = (
    "model_id",
    "alignment_id",
    "name",
    "base_model",
    "alignment_project",
    "created_date",
    "status",
    "deployment_status",
    "endpoint",
    "creator",
    "last_used",
    "downloadable",
    "conversation_saving_enabled",
    "accuracy",
    "uncertainty",
    "domain_violations",
    "average_response_time",
    "record_count",
)
DAILY_COLUMNS = (
    "account_id",
    "model_key",
    "day",
    "observations",
    "first_snapshot_at",
    "last_snapshot_at",
    "first_usage_count",
    "usage_count",
    "usage_delta_within_day",
    "usage_delta",
    "first_status",
    "first_deployment_status",
    *_SNAPSHOT_FIELDS,
)
CURRENT_COLUMNS = (
    "account_id",
    "model_key",
    *_SNAPSHOT_FIELDS[:10],
    "usage_count",
    *_SNAPSHOT_FIELDS[10:],
    "first_seen_at",
    "last_seen_at",
)
STATUS_COLUMNS = (
    "account_id",
    "model_key",
    "changed_at",
    "day",
    "from_status",
    "to_status",
    "from_deployment_status",
    "to_deployment_status",
)
HEALTH_COLUMNS = ("account_id", "last_success_at", "last_outcome", "consecutive_failures", "last_run_at")
_FAILED = "('failed', 'auth_failed')"
_ON_BATCH_DAYS = "WHERE EXISTS (SELECT 1 FROM rollup_batch_days AS b WHERE b.account_id = s.account_id AND b.day = s.day)"
_SUCCESS = "('empty', 'ok')"

# Temporary tables of one maintenance, dropped before its transaction ends.
TEMP_TABLES = ("rollup_touched", "rollup_batch_days", "rollup_key_snapshots", "rollup_keys", "rollup_next", "rollup_prev", "rollup_spans")

Statement = tuple[str, Sequence[Any]]


def _list(columns: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + c for c in columns)


def _key_snapshots(source: str) -> str:
    """model_key_snapshots (nugen_etl/sql/002_views.sql) over the snapshot rows ``source`` selects."""
    return f"""
SELECT account_id, model_key, snapshot_at, snapshot_date, usage_count, {_list(_SNAPSHOT_FIELDS)}
FROM (
    SELECT s.account_id, s.model_key, s.snapshot_at, s.snapshot_date, s.model_id, s.alignment_id, s.name,
           s.base_model, s.alignment_project, s.created_date, s.status, s.deployment_status, s.endpoint,
           s.creator, SUM(s.usage_count) OVER k AS usage_count, MAX(s.last_used) OVER k AS last_used,
           s.downloadable, s.conversation_saving_enabled, s.accuracy, s.uncertainty, s.domain_violations,
           s.average_response_time, COUNT(*) OVER k AS record_count,
           ROW_NUMBER() OVER (PARTITION BY s.account_id, s.model_key, s.snapshot_at
                              ORDER BY s.model_id DESC) AS pick
    FROM ({source}) AS s
    WINDOW k AS (PARTITION BY s.account_id, s.model_key, s.snapshot_at)
) AS r
WHERE pick = 1"""


def _daily_from(key_snapshots: str) -> str:
    """Daily rows (usage_delta left NULL: it needs the previous observed day) from key snapshots."""
    last = ", ".join(f"l.{c}" for c in _SNAPSHOT_FIELDS)
    return f"""
WITH o AS (
    SELECT ks.*,
           LAG(usage_count) OVER w AS prev_usage,
           ROW_NUMBER() OVER w AS first_of_day,
           ROW_NUMBER() OVER (PARTITION BY account_id, model_key, snapshot_date ORDER BY snapshot_at DESC) AS last_of_day
    FROM {key_snapshots} AS ks
    WINDOW w AS (PARTITION BY account_id, model_key, snapshot_date ORDER BY snapshot_at)
), a AS (
    SELECT account_id, model_key, snapshot_date, COUNT(*) AS observations, MIN(snapshot_at) AS first_snapshot_at,
           MAX(CASE WHEN first_of_day = 1 THEN usage_count END) AS first_usage_count,
           SUM(CASE WHEN usage_count < prev_usage THEN usage_count ELSE usage_count - prev_usage END) AS within_day,
           MAX(CASE WHEN first_of_day = 1 THEN status END) AS first_status,
           MAX(CASE WHEN first_of_day = 1 THEN deployment_status END) AS first_deployment_status
    FROM o
    GROUP BY account_id, model_key, snapshot_date
)
SELECT l.account_id, l.model_key, l.snapshot_date, a.observations, a.first_snapshot_at, l.snapshot_at,
       a.first_usage_count, l.usage_count, a.within_day, NULL, a.first_status, a.first_deployment_status, {last}
FROM o AS l
JOIN a ON a.account_id = l.account_id AND a.model_key = l.model_key AND a.snapshot_date = l.snapshot_date
WHERE l.last_of_day = 1"""


def _within_day_changes(key_snapshots: str) -> str:
    return f"""
SELECT account_id, model_key, snapshot_at, snapshot_date, prev_status, status, prev_deployment_status, deployment_status
FROM (
    SELECT ks.account_id, ks.model_key, ks.snapshot_at, ks.snapshot_date, ks.status, ks.deployment_status,
           LAG(ks.status) OVER w AS prev_status, LAG(ks.deployment_status) OVER w AS prev_deployment_status,
           ROW_NUMBER() OVER w AS observation
    FROM {key_snapshots} AS ks
    WINDOW w AS (PARTITION BY ks.account_id, ks.model_key, ks.snapshot_date ORDER BY ks.snapshot_at)
) AS x
WHERE observation > 1
  AND (status IS DISTINCT FROM prev_status OR deployment_status IS DISTINCT FROM prev_deployment_status)"""


def _null_sum(*terms: str) -> str:
    """SUM's rule over ``terms``: NULL when every one is, else the sum of those that are not."""
    return f"CASE WHEN {' AND '.join(f'{t} IS NULL' for t in terms)} THEN NULL ELSE {' + '.join(f'COALESCE({t}, 0)' for t in terms)} END"


def _pair(current: str, previous: str) -> str:
    """One usage pair's delta (a counter reset counts the new value), NULL when either end is."""
    return f"CASE WHEN {current} < {previous} THEN {current} ELSE {current} - {previous} END"


_BOUNDARY_DELTA = _pair("cur.first_usage_count", "prv.usage_count")


def _set_usage_delta(pairs: str, *, floored: bool = False) -> str:
    """usage_delta = the day's within-day pairs plus its first pair (with ``pairs``' prev_day), NULL
    when no pair is known: SUM's rule over the pairs. ``floored``: two ``?`` for the earliest day
    ``pairs`` holds, a constant DuckDB prunes the table's older blocks by."""
    floor = " AND cur.day >= ?" if floored else ""
    return f"""
UPDATE nugen.rollup_model_daily AS d
SET usage_delta = {_null_sum("d.usage_delta_within_day", "b.boundary")}
FROM (
    SELECT p.account_id, p.model_key, p.day, {_BOUNDARY_DELTA} AS boundary
    FROM ({pairs}) AS p
    JOIN nugen.rollup_model_daily AS cur
      ON cur.account_id = p.account_id AND cur.model_key = p.model_key AND cur.day = p.day{floor}
    LEFT JOIN nugen.rollup_model_daily AS prv
      ON prv.account_id = p.account_id AND prv.model_key = p.model_key AND prv.day = p.prev_day
) AS b
WHERE d.account_id = b.account_id AND d.model_key = b.model_key AND d.day = b.day{floor.replace("cur.", "d.")}"""


def _boundary_changes(pairs: str, *, floored: bool = False) -> str:
    """A status change at each day's first snapshot that differs from the previous observed day's last
    (``floored``: one ``?``, as in ``_set_usage_delta``)."""
    floor = " AND cur.day >= ?" if floored else ""
    return f"""
INSERT INTO nugen.rollup_status_changes ({_list(STATUS_COLUMNS)})
SELECT cur.account_id, cur.model_key, cur.first_snapshot_at, cur.day, prv.status, cur.first_status,
       prv.deployment_status, cur.first_deployment_status
FROM ({pairs}) AS p
JOIN nugen.rollup_model_daily AS cur
  ON cur.account_id = p.account_id AND cur.model_key = p.model_key AND cur.day = p.day{floor}
LEFT JOIN nugen.rollup_model_daily AS prv  -- p.prev_day's row exists: LEFT keeps PostgreSQL joining p first
  ON prv.account_id = p.account_id AND prv.model_key = p.model_key AND prv.day = p.prev_day
WHERE cur.first_status IS DISTINCT FROM prv.status
   OR cur.first_deployment_status IS DISTINCT FROM prv.deployment_status"""


def _current_from(spans: str) -> str:
    """Current rows from ``spans`` (account_id, model_key, first_seen_at, last_seen_at) and the last
    observed day's row (the UTC date of last_seen_at)."""
    fields = ", ".join(f"l.{c}" for c in CURRENT_COLUMNS[2:-2])
    return f"""
INSERT INTO nugen.rollup_models_current ({_list(CURRENT_COLUMNS)})
SELECT l.account_id, l.model_key, {fields}, sp.first_seen_at, l.last_snapshot_at
FROM ({spans}) AS sp
JOIN nugen.rollup_model_daily AS l
  ON l.account_id = sp.account_id AND l.model_key = sp.model_key AND l.day = CAST(sp.last_seen_at AS DATE)
WHERE sp.first_seen_at IS NOT NULL"""


def _health_from(spans: str, *, floored: bool = False) -> str:
    """Health rows from ``spans`` (account_id, last_success_at, last_run_at) and account_runs
    (account_health's rules: failures counted since the last success, all of them if none).
    ``floored``: one ``?``, a time no account's last success is before; the runs before it are never
    counted, and DuckDB skips their blocks instead of joining every account run."""
    floor = " AND f.snapshot_at > CAST(? AS TIMESTAMPTZ)" if floored else ""
    return f"""
INSERT INTO nugen.rollup_account_health ({_list(HEALTH_COLUMNS)})
SELECT s.account_id, s.last_success_at,
       (SELECT latest.outcome FROM nugen.account_runs AS latest  -- a key lookup, not a join over all runs
         WHERE latest.account_id = s.account_id AND latest.snapshot_at = s.last_run_at),
       (SELECT COUNT(*) FROM nugen.account_runs AS f
         WHERE f.account_id = s.account_id AND f.outcome IN {_FAILED}
           AND f.snapshot_at > COALESCE(s.last_success_at, CAST('-infinity' AS TIMESTAMPTZ)){floor}),
       s.last_run_at
FROM ({spans}) AS s
WHERE s.last_run_at IS NOT NULL"""


# --- maintenance inside a load -----------------------------------------------------------------


def capture_statements() -> list[Statement]:
    """Before the slot delete: the (account_id, model_key, day) rows the replaced slots held."""
    return [
        (
            "CREATE TEMPORARY TABLE rollup_touched AS "
            "SELECT DISTINCT account_id, model_key, snapshot_date AS day FROM nugen.model_snapshots "
            "WHERE (account_id, snapshot_at) IN (SELECT account_id, snapshot_at FROM stg_slot_keys) "
            "AND model_key IS NOT NULL",
            (),
        )
    ]


def _health_statements(success_floor: datetime | None) -> list[Statement]:
    """The health rows of the batch's accounts (``stg_account_runs``). ``success_floor``: a time no
    account's last success is before once the batch is in (the earliest of their newest successes in
    the batch, when each has one), or None."""
    # account_runs rows are never deleted and a success is never overwritten, so an account's last run
    # and last success only move forward: the batch's runs and the health before it settle them.
    return [
        (
            "CREATE TEMPORARY TABLE rollup_accounts AS "
            "SELECT b.account_id,"
            f" GREATEST(MAX(h.last_success_at), MAX(CASE WHEN b.outcome IN {_SUCCESS} THEN b.snapshot_at END))"
            "  AS last_success_at,"
            " GREATEST(MAX(h.last_run_at), MAX(b.snapshot_at)) AS last_run_at "
            "FROM stg_account_runs AS b LEFT JOIN nugen.rollup_account_health AS h ON h.account_id = b.account_id "
            "GROUP BY b.account_id",
            (),
        ),
        ("DELETE FROM nugen.rollup_account_health WHERE account_id IN (SELECT account_id FROM rollup_accounts)", ()),
        (
            _health_from("SELECT * FROM rollup_accounts", floored=success_floor is not None),
            () if success_floor is None else (success_floor.isoformat(),),
        ),
        ("DROP TABLE rollup_accounts", ()),
    ]


def maintenance_statements(
    first_day: date | None, last_day: date | None, *, success_floor: datetime | None = None, analyze: bool = True
) -> list[Statement]:
    """After the batch's rows are in: bring every rollup the batch can change up to date.

    ``first_day``/``last_day``: the UTC dates of the batch's earliest and latest data-bearing slot
    (None when it carries none: then only the health of its accounts changes). The batch's own
    rollups are staged as ``stg_rollup_days``, ``stg_rollup_daily`` and ``stg_rollup_status_changes``
    (``rollup_batch.py``). ``analyze``: ANALYZE each temporary table the joins probe once it is
    filled (PostgreSQL keeps no statistics of one otherwise and plans the joins on it blind; DuckDB
    has them from the insert)."""
    health = _health_statements(success_floor)
    finish = _analyzed if analyze else list
    if first_day is None or last_day is None:
        return finish([*health, ("DROP TABLE rollup_touched", ())])
    lo, hi = first_day - timedelta(days=LOOKBACK_DAYS), last_day + timedelta(days=LOOKBACK_DAYS)
    lo_at, hi_at = lo.isoformat(), (hi + timedelta(days=1)).isoformat()
    # LATERAL ... OFFSET 0 (kept from being flattened into a join): a nested loop over the key index. As a
    # plain join PostgreSQL hash-joined the whole history: 0.67 s a slot at 2 M rows instead of 0.07 s.
    touched_ks = _key_snapshots(
        "SELECT s.* FROM (SELECT DISTINCT account_id, model_key, day FROM rollup_touched AS u"
        " WHERE NOT EXISTS (SELECT 1 FROM rollup_batch_days AS b"
        "  WHERE b.account_id = u.account_id AND b.day = u.day)) AS t "
        "CROSS JOIN LATERAL (SELECT * FROM nugen.model_snapshots AS m"
        " WHERE m.account_id = t.account_id AND m.model_key = t.model_key AND m.snapshot_date = t.day"
        " AND m.snapshot_at >= CAST(t.day AS TIMESTAMPTZ)"
        " AND m.snapshot_at < CAST(t.day AS TIMESTAMPTZ) + INTERVAL '1 day' OFFSET 0) AS s"
    )
    touched = (
        "USING (SELECT DISTINCT account_id, model_key, day FROM rollup_touched) AS t "
        "WHERE r.account_id = t.account_id AND r.model_key = t.model_key AND r.day = t.day"
    )
    return finish(
        [
            # The days the new rows fall on, beside those the replaced rows fell on.
            ("INSERT INTO rollup_touched SELECT account_id, model_key, day FROM stg_rollup_daily", ()),
            # The (account_id, day) pairs the batch holds every slot of: their rows come from the batch's
            # own rollups (rollup_batch.py); every other touched day is computed from its snapshots.
            (
                "CREATE TEMPORARY TABLE rollup_batch_days AS "
                "SELECT d.account_id, d.day FROM stg_rollup_days AS d "
                "CROSS JOIN LATERAL (SELECT COUNT(*) AS n FROM nugen.model_snapshots AS m"
                " WHERE m.account_id = d.account_id AND m.snapshot_at >= CAST(d.day AS TIMESTAMPTZ)"
                " AND m.snapshot_at < CAST(d.day AS TIMESTAMPTZ) + INTERVAL '1 day'"
                # constants DuckDB prunes by; on PostgreSQL the key alone answers (no heap column is read)
                " AND m.snapshot_at >= CAST(? AS TIMESTAMPTZ) AND m.snapshot_at < CAST(? AS TIMESTAMPTZ) OFFSET 0) AS w "
                "WHERE w.n = d.snapshot_rows",
                (first_day.isoformat(), (last_day + timedelta(days=1)).isoformat()),
            ),
            (f"CREATE TEMPORARY TABLE rollup_key_snapshots AS {touched_ks}", ()),
            # The model_keys whose rows the batch touched, with their span before it (for the fallbacks).
            (
                "CREATE TEMPORARY TABLE rollup_keys AS "
                "SELECT t.account_id, t.model_key, c.first_seen_at, c.last_seen_at "
                "FROM (SELECT DISTINCT account_id, model_key FROM rollup_touched) AS t "
                "LEFT JOIN nugen.rollup_models_current AS c ON c.account_id = t.account_id AND c.model_key = t.model_key",
                (),
            ),
            # 1. The touched days, from their snapshots.
            (f"DELETE FROM nugen.rollup_model_daily AS r {touched}", ()),
            (f"INSERT INTO nugen.rollup_model_daily ({_list(DAILY_COLUMNS)}) {_daily_from('rollup_key_snapshots')}", ()),
            (
                f"INSERT INTO nugen.rollup_model_daily ({_list(DAILY_COLUMNS)}) "
                f"SELECT {_list(DAILY_COLUMNS, 's.')} FROM stg_rollup_daily AS s {_ON_BATCH_DAYS}",
                (),
            ),
            (f"DELETE FROM nugen.rollup_status_changes AS r {touched}", ()),
            (f"INSERT INTO nugen.rollup_status_changes ({_list(STATUS_COLUMNS)}) {_within_day_changes('rollup_key_snapshots')}", ()),
            (
                f"INSERT INTO nugen.rollup_status_changes ({_list(STATUS_COLUMNS)}) "
                f"SELECT {_list(STATUS_COLUMNS, 's.')} FROM stg_rollup_status_changes AS s {_ON_BATCH_DAYS}",
                (),
            ),
            # 2. The days whose previous observed day may have changed: the touched ones and the next
            # observed day after each, then the previous observed day of each of those.
            (
                "CREATE TEMPORARY TABLE rollup_next AS "
                "SELECT t.account_id, t.model_key, t.day AS touched_day, n.day FROM "
                "(SELECT DISTINCT account_id, model_key, day FROM rollup_touched) AS t "
                "LEFT JOIN LATERAL (SELECT d.day FROM nugen.rollup_model_daily AS d "
                " WHERE d.account_id = t.account_id AND d.model_key = t.model_key AND d.day > t.day"
                "  AND d.day > ? AND d.day <= ?"  # constants DuckDB prunes by: t.day >= first_day
                " ORDER BY d.day LIMIT 1) AS n ON TRUE",
                (first_day, hi),
            ),
            (
                "UPDATE rollup_next SET day = f.day FROM ("
                " SELECT x.account_id, x.model_key, x.touched_day, MIN(d.day) AS day"
                " FROM (SELECT n.* FROM rollup_next AS n JOIN rollup_keys AS k"
                "       ON k.account_id = n.account_id AND k.model_key = n.model_key"
                "       WHERE n.day IS NULL AND k.last_seen_at >= CAST(? AS TIMESTAMPTZ)) AS x"
                " JOIN nugen.rollup_model_daily AS d ON d.account_id = x.account_id AND d.model_key = x.model_key"
                "  AND d.day > x.touched_day"
                " GROUP BY x.account_id, x.model_key, x.touched_day) AS f "
                "WHERE rollup_next.account_id = f.account_id AND rollup_next.model_key = f.model_key "
                "AND rollup_next.touched_day = f.touched_day",
                (hi_at,),
            ),
            (
                "CREATE TEMPORARY TABLE rollup_prev AS "
                "SELECT t.account_id, t.model_key, t.day, p.day AS prev_day FROM ("
                " SELECT account_id, model_key, touched_day AS day FROM rollup_next"
                " UNION SELECT account_id, model_key, day FROM rollup_next WHERE day IS NOT NULL) AS t "
                "LEFT JOIN LATERAL (SELECT d.day FROM nugen.rollup_model_daily AS d "
                " WHERE d.account_id = t.account_id AND d.model_key = t.model_key AND d.day < t.day"
                "  AND d.day >= ? AND d.day <= ?"  # a previous day is never past last_day (see docs above)
                " ORDER BY d.day DESC LIMIT 1) AS p ON TRUE",
                (lo, last_day),
            ),
            (
                "UPDATE rollup_prev SET prev_day = f.prev_day FROM ("
                " SELECT x.account_id, x.model_key, x.day, MAX(d.day) AS prev_day"
                " FROM (SELECT p.* FROM rollup_prev AS p JOIN rollup_keys AS k"
                "       ON k.account_id = p.account_id AND k.model_key = p.model_key"
                "       WHERE p.prev_day IS NULL AND k.first_seen_at < CAST(? AS TIMESTAMPTZ)) AS x"
                " JOIN nugen.rollup_model_daily AS d ON d.account_id = x.account_id AND d.model_key = x.model_key"
                "  AND d.day < x.day"
                " GROUP BY x.account_id, x.model_key, x.day) AS f "
                "WHERE rollup_prev.account_id = f.account_id AND rollup_prev.model_key = f.model_key "
                "AND rollup_prev.day = f.day",
                (lo_at,),
            ),
            # (Every day in rollup_prev is on or after first_day: the constants below let DuckDB skip the rest.)
            (_set_usage_delta("SELECT * FROM rollup_prev", floored=True), (first_day, first_day)),
            (
                "DELETE FROM nugen.rollup_status_changes WHERE changed_at >= CAST(? AS TIMESTAMPTZ)"
                " AND (account_id, model_key, changed_at) IN ("
                " SELECT d.account_id, d.model_key, d.first_snapshot_at FROM rollup_prev AS p"
                " JOIN nugen.rollup_model_daily AS d"
                "  ON d.account_id = p.account_id AND d.model_key = p.model_key AND d.day = p.day AND d.day >= ?)",
                (first_day.isoformat(), first_day),
            ),
            (_boundary_changes("SELECT * FROM rollup_prev WHERE prev_day IS NOT NULL", floored=True), (first_day,)),
            # 3. The current row of each touched model_key: its first and last observed day. Days outside
            # the window are untouched, so the span before the batch settles an end that lies past it;
            # an end the window no longer holds is searched in the whole history.
            (
                "CREATE TEMPORARY TABLE rollup_spans AS "
                "SELECT k.account_id, k.model_key,"
                " CASE WHEN k.first_seen_at < CAST(? AS TIMESTAMPTZ) THEN k.first_seen_at ELSE f.first_snapshot_at END"
                "  AS first_seen_at,"
                " CASE WHEN k.last_seen_at >= CAST(? AS TIMESTAMPTZ) THEN k.last_seen_at ELSE l.last_snapshot_at END"
                "  AS last_seen_at "
                "FROM rollup_keys AS k "
                "LEFT JOIN LATERAL (SELECT d.first_snapshot_at FROM nugen.rollup_model_daily AS d"
                " WHERE d.account_id = k.account_id AND d.model_key = k.model_key AND d.day >= ? AND d.day <= ?"
                " ORDER BY d.day LIMIT 1) AS f ON TRUE "
                "LEFT JOIN LATERAL (SELECT d.last_snapshot_at FROM nugen.rollup_model_daily AS d"
                " WHERE d.account_id = k.account_id AND d.model_key = k.model_key AND d.day >= ? AND d.day <= ?"
                " ORDER BY d.day DESC LIMIT 1) AS l ON TRUE",
                (lo_at, hi_at, lo, hi, lo, hi),
            ),
            (
                "UPDATE rollup_spans SET first_seen_at = COALESCE(rollup_spans.first_seen_at, f.first_seen_at),"
                " last_seen_at = COALESCE(rollup_spans.last_seen_at, f.last_seen_at) FROM ("
                " SELECT x.account_id, x.model_key, MIN(d.first_snapshot_at) AS first_seen_at,"
                "  MAX(d.last_snapshot_at) AS last_seen_at"
                " FROM (SELECT * FROM rollup_spans WHERE (first_seen_at IS NULL) <> (last_seen_at IS NULL)) AS x"
                " JOIN nugen.rollup_model_daily AS d ON d.account_id = x.account_id AND d.model_key = x.model_key"
                " GROUP BY x.account_id, x.model_key) AS f "
                "WHERE rollup_spans.account_id = f.account_id AND rollup_spans.model_key = f.model_key",
                (),
            ),
            (
                "DELETE FROM nugen.rollup_models_current WHERE (account_id, model_key) IN (SELECT account_id, model_key FROM rollup_keys)",
                (),
            ),
            (_current_from("SELECT * FROM rollup_spans"), ()),
            *health,
            *[(f"DROP TABLE {name}", ()) for name in TEMP_TABLES],
        ]
    )


def appending_query(day: date) -> Statement:
    """One boolean: whether a batch whose rows all fall on ``day`` only appends observations, i.e. it
    replaces no stored row with a model_key and every model_key it holds was last seen before the
    batch's first snapshot of it. Then :func:`appending_statements` keeps the rollups exact; the
    caller also checks that the batch's own rollups cover all its rows (``stg_rollup_days``)."""
    start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
    return (
        "SELECT NOT EXISTS (SELECT 1 FROM nugen.model_snapshots AS m"
        " WHERE (m.account_id, m.snapshot_at) IN (SELECT account_id, snapshot_at FROM stg_slot_keys)"
        "  AND m.snapshot_at >= CAST(? AS TIMESTAMPTZ) AND m.snapshot_at < CAST(? AS TIMESTAMPTZ) AND m.model_key IS NOT NULL)"
        " AND NOT EXISTS (SELECT 1 FROM stg_rollup_daily AS b JOIN nugen.rollup_models_current AS c"
        "  ON c.account_id = b.account_id AND c.model_key = b.model_key WHERE c.last_seen_at >= b.first_snapshot_at)",
        (start, end),
    )


def appending_statements(day: date, *, success_floor: datetime | None = None, analyze: bool = True) -> list[Statement]:
    """The upkeep of a batch that only appends the newest observations of ``day`` (see
    :func:`appending_query`): each model_key's stored rollups end at its current row, so the batch's
    own daily rows (``stg_rollup_daily``) extend that day's row or start a new day after it, with
    the one usage pair and status change between the current row and the batch's first observation.
    Nothing before the batch changes and nothing after it exists, so none of the searches for
    previous or next observed days that :func:`maintenance_statements` makes are needed. The result
    equals what that full upkeep gives (property-tested against it and the reference views)."""
    keyed = "p.account_id = b.account_id AND p.model_key = b.model_key"
    same_day_fields = ", ".join(f"{c} = b.{c}" for c in _SNAPSHOT_FIELDS)
    within, pair = "b.usage_delta_within_day", _pair("b.first_usage_count", "d.usage_count")
    new_day = [_null_sum(within, _pair("b.first_usage_count", "p.usage_count")) if c == "usage_delta" else f"b.{c}" for c in DAILY_COLUMNS]
    current = [f"b.{c}" for c in CURRENT_COLUMNS[:-2]]
    finish = _analyzed if analyze else list
    return finish(
        [
            # The batch's model_keys that have a current row: their last observation before the batch.
            (
                "CREATE TEMPORARY TABLE rollup_prior AS "
                "SELECT c.account_id, c.model_key, c.first_seen_at, c.usage_count, c.status, c.deployment_status,"
                " CAST(c.last_seen_at AS DATE) = ? AS same_day "
                "FROM stg_rollup_daily AS b JOIN nugen.rollup_models_current AS c"
                " ON c.account_id = b.account_id AND c.model_key = b.model_key",
                (day,),
            ),
            (
                "UPDATE nugen.rollup_model_daily AS d SET observations = d.observations + b.observations,"
                " last_snapshot_at = b.last_snapshot_at, usage_count = b.usage_count,"
                f" usage_delta_within_day = {_null_sum('d.usage_delta_within_day', pair, within)},"
                f" usage_delta = {_null_sum('d.usage_delta', pair, within)}, {same_day_fields} "
                f"FROM (SELECT b.* FROM stg_rollup_daily AS b JOIN rollup_prior AS p ON {keyed} WHERE p.same_day) AS b "
                "WHERE d.account_id = b.account_id AND d.model_key = b.model_key AND d.day = b.day AND d.day = ?",
                (day,),
            ),
            (
                f"INSERT INTO nugen.rollup_model_daily ({_list(DAILY_COLUMNS)}) SELECT {', '.join(new_day)} "
                f"FROM stg_rollup_daily AS b LEFT JOIN rollup_prior AS p ON {keyed} WHERE p.same_day IS NOT TRUE",
                (),
            ),
            (
                f"INSERT INTO nugen.rollup_status_changes ({_list(STATUS_COLUMNS)}) "
                f"SELECT {_list(STATUS_COLUMNS)} FROM stg_rollup_status_changes "
                "UNION ALL SELECT b.account_id, b.model_key, b.first_snapshot_at, b.day, p.status, b.first_status,"
                " p.deployment_status, b.first_deployment_status "
                f"FROM stg_rollup_daily AS b JOIN rollup_prior AS p ON {keyed} "
                "WHERE b.first_status IS DISTINCT FROM p.status OR b.first_deployment_status IS DISTINCT FROM p.deployment_status",
                (),
            ),
            (
                "DELETE FROM nugen.rollup_models_current WHERE (account_id, model_key) IN (SELECT account_id, model_key FROM rollup_prior)",
                (),
            ),
            (
                f"INSERT INTO nugen.rollup_models_current ({_list(CURRENT_COLUMNS)}) "
                f"SELECT {', '.join(current)}, COALESCE(p.first_seen_at, b.first_snapshot_at), b.last_snapshot_at "
                f"FROM stg_rollup_daily AS b LEFT JOIN rollup_prior AS p ON {keyed}",
                (),
            ),
            *_health_statements(success_floor),
            ("DROP TABLE rollup_prior", ()),
        ]
    )


_FILLS_TEMP_TABLE = re.compile(r"^(?:CREATE TEMPORARY TABLE|INSERT INTO) (rollup_[a-z_]+) ")


def _analyzed(statements: list[Statement]) -> list[Statement]:
    """``statements`` with an ANALYZE after each that fills a temporary table a join probes
    (rollup_key_snapshots is only ever read whole)."""
    out: list[Statement] = []
    for sql, params in statements:
        out.append((sql, params))
        filled = _FILLS_TEMP_TABLE.match(sql)
        if filled and filled[1] != "rollup_key_snapshots":
            out.append((f"ANALYZE {filled[1]}", ()))
    return out


# --- rebuild from the snapshots ------------------------------------------------------------------


def rebuild_statements() -> list[Statement]:
    """Every rollup rebuilt from model_snapshots and account_runs, set-based (one transaction)."""
    all_ks = _key_snapshots("SELECT * FROM nugen.model_snapshots WHERE model_key IS NOT NULL")
    daily_pairs = (
        "SELECT account_id, model_key, day, "
        "LAG(day) OVER (PARTITION BY account_id, model_key ORDER BY day) AS prev_day "
        "FROM nugen.rollup_model_daily"
    )
    return [
        *[
            (f"DELETE FROM nugen.{table}", ())
            for table in ("rollup_model_daily", "rollup_status_changes", "rollup_models_current", "rollup_account_health")
        ],
        # In day order, as the loads append them: a dashboard's date range then reads contiguous pages
        # (PostgreSQL: a 30-day trend over 19.7 M snapshots' rollups took ~170 ms scattered, ~30 ms so).
        (f"INSERT INTO nugen.rollup_model_daily ({_list(DAILY_COLUMNS)}) {_daily_from(f'({all_ks})')} ORDER BY 3", ()),
        (f"INSERT INTO nugen.rollup_status_changes ({_list(STATUS_COLUMNS)}) {_within_day_changes(f'({all_ks})')} ORDER BY 3", ()),
        (_set_usage_delta(daily_pairs), ()),
        (_boundary_changes(f"SELECT * FROM ({daily_pairs}) AS q WHERE prev_day IS NOT NULL"), ()),
        (
            _current_from(
                "SELECT account_id, model_key, MIN(first_snapshot_at) AS first_seen_at, "
                "MAX(last_snapshot_at) AS last_seen_at FROM nugen.rollup_model_daily GROUP BY account_id, model_key"
            ),
            (),
        ),
        (
            _health_from(
                f"SELECT account_id, MAX(CASE WHEN outcome IN {_SUCCESS} THEN snapshot_at END) AS last_success_at, "
                "MAX(snapshot_at) AS last_run_at FROM nugen.account_runs GROUP BY account_id"
            ),
            (),
        ),
    ]
