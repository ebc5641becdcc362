"""Pure transform: the parsed ``domain_aligned_models`` list -> the declared Arrow tables.

No I/O and no clock: the same input and arguments always give the same tables, rows in input order.

Rules a caller may rely on (and that the tests pin down):

* A record that is not an object, has no usable ``id`` (absent, null, not a string, empty, or
  holding NUL / unpaired surrogates) or repeats an earlier record's ``id`` goes to
  ``quarantined_records`` only, with its position and reason. Nothing is dropped silently.
* A value of the wrong type becomes the column's type only when that is lossless
  (``"0.92"`` -> 0.92, ``2.0`` -> 2, ``"150"`` -> 150, ``"true"`` -> True, ``7`` -> ``"7"`` for a
  text column). Otherwise the column is NULL and the row's ``quality_issues`` (a JSON list of
  short notes, NULL when there are none) says why. Booleans are never numbers and numbers never
  booleans; NaN and infinities are not numbers. Timestamps are ISO 8601 with a time part; a
  naive one is taken as UTC; sub-microsecond digits are cut to microseconds and reported.
* Text keeps every character except NUL and unpaired surrogates (PostgreSQL and UTF-8 cannot
  hold them): each becomes U+FFFD and is reported.
* ``coerced_count`` is the number of notes written to ``quality_issues`` across all rows.
* ``model_metrics`` holds one row per finite int/float (not bool) found under
  ``performance_metrics`` and ``evaluation_data``; numeric strings are not leaves. ``metric`` is
  the dotted path from the model object, list items use their index, and a key's ``\\`` and ``.``
  are escaped as ``\\\\`` and ``\\.`` (NUL and unpaired surrogates as ``\\uXXXX``), so a path
  splits back into its keys without ambiguity. Paths stop at 64 segments (reported); ints that a
  double cannot hold exactly are reported, not rounded.
* JSON columns are compact, key-sorted, non-ASCII kept; non-finite numbers in them become null
  (reported) so they stay valid JSON; unpaired surrogates are written as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable

import pyarrow as pa

from nugen_etl import schemas

MAX_DEPTH = 64  # most segments a metric path may have; deeper values stay in the JSON only

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_MICROSECOND = timedelta(microseconds=1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXACT_DOUBLE = 2**53  # beyond this an int may not survive the trip through float64
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_FRACTION = re.compile(r"[.,](\d{7,})")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE_IN_PATH = re.compile("[\x00\ud800-\udfff]")
_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 2

_PM_FLOAT = ("accuracy", "uncertainty", "average_response_time", "accuracy_before",
             "accuracy_after", "uncertainty_before", "uncertainty_after")
_PM_INT = ("domain_violations", "domain_violations_before", "domain_violations_after")
_PM_KEYS = frozenset(_PM_FLOAT + _PM_INT)
_TOP_KEYS = frozenset({
    "id", "alignment_id", "name", "base_model", "alignment_project", "created_date", "status",
    "deployment_status", "endpoint", "creator", "usage_count", "last_used", "performance_metrics",
    "downloadable", "evaluation_data", "conversation_saving_enabled",
})

Notes = dict[str, None]  # an insertion-ordered set: one note per problem, even when found twice


@dataclass(frozen=True)
class Flattened:
    """The four slot tables of one answer, plus how many values were reported as coerced."""

    snapshots: pa.Table
    metrics: pa.Table
    evaluations: pa.Table
    quarantine: pa.Table
    coerced_count: int

    def tables(self) -> dict[str, pa.Table]:
        """The tables keyed by their ``schemas.TableSpec.name``."""
        return {
            schemas.MODEL_SNAPSHOTS.name: self.snapshots,
            schemas.MODEL_METRICS.name: self.metrics,
            schemas.EVALUATIONS.name: self.evaluations,
            schemas.QUARANTINE.name: self.quarantine,
        }


# --- small helpers -------------------------------------------------------------------------

def _show(value: Any) -> str:
    """A short repr of an offending value for a note (about 80 characters at most)."""
    return _REPR.repr(value)


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for notes and quarantine reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _bad_text(s: str) -> bool:
    """True if ``s`` holds a NUL or an unpaired surrogate (neither fits PostgreSQL text)."""
    return "\x00" in s or (not s.isascii() and _SURROGATE.search(s) is not None)


def _escape_char(m: re.Match[str]) -> str:
    return "\\u%04x" % ord(m[0])


@lru_cache(maxsize=8192)
def path_segment(key: Any) -> str:
    r"""One object key as a metric path segment: ``\`` -> ``\\``, ``.`` -> ``\.``.

    NUL and unpaired surrogates become ``\uXXXX``; other characters are kept.

    >>> path_segment("accuracy")
    'accuracy'
    >>> print(path_segment("p.95"), path_segment("a\\b"))
    p\.95 a\\b
    """
    key = key if type(key) is str else str(key)
    if "\\" in key or "." in key:
        key = key.replace("\\", "\\\\").replace(".", "\\.")
    if _bad_text(key):
        key = _UNSAFE_IN_PATH.sub(_escape_char, key)
    return key


def to_json(value: Any, label: str, notes: Notes) -> str:
    """Compact, key-sorted JSON text of ``value``; problems are noted under ``label``."""
    try:
        text = _JSON.encode(value)
    except ValueError:  # NaN or Infinity somewhere inside
        try:
            text = _JSON.encode(_nonfinite_to_null(value, label, notes))
        except (ValueError, TypeError, RecursionError):
            text = _repr_json(value, label, notes)
    except (TypeError, RecursionError):  # only for inputs that did not come from a JSON parser
        text = _repr_json(value, label, notes)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(_escape_char, text)  # surrogates only occur inside JSON strings
    return text


def _repr_json(value: Any, label: str, notes: Notes) -> str:
    notes[f"{_short(label or 'extra_json')}: not serialisable as JSON, kept as repr"] = None
    return json.dumps(repr(value), ensure_ascii=False)


def _nonfinite_to_null(value: Any, label: str, notes: Notes) -> Any:
    """A copy of ``value`` with each NaN/Infinity replaced by None and noted (iterative)."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any, str]] = [(root, 0, value, label)]
    seen: set[int] = set()  # a cycle (impossible in parsed JSON) is left to the repr fallback
    while stack:
        parent, slot, node, path = stack.pop()
        prefix = f"{path}." if path else ""
        if isinstance(node, float) and not math.isfinite(node):
            notes[f"{_short(path)}: not a finite number ({node!r})"] = None
            parent[slot] = None
        elif isinstance(node, (dict, list, tuple)) and id(node) not in seen:
            seen.add(id(node))
            copy: Any
            if isinstance(node, dict):
                copy = dict(node)
                children = [(k, v, prefix + path_segment(k)) for k, v in copy.items()]
            else:
                copy = list(node)
                children = [(i, v, f"{prefix}{i}") for i, v in enumerate(copy)]
            parent[slot] = copy
            stack.extend((copy, k, v, p) for k, v, p in children)
    return root[0]


# --- coercion: each returns the typed value or None, noting anything lossy ------------------

def as_str(v: Any, path: str, notes: Notes) -> str | None:
    """Text as is (NUL / unpaired surrogates -> U+FFFD, noted); an int becomes its digits."""
    if type(v) is str:
        if _bad_text(v):
            if "\x00" in v:
                notes[f"{path}: NUL character replaced with U+FFFD"] = None
                v = v.replace("\x00", "\ufffd")
            if not v.isascii() and _SURROGATE.search(v):
                notes[f"{path}: unpaired surrogate replaced with U+FFFD"] = None
                v = _SURROGATE.sub("\ufffd", v)
        return v
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    notes[f"{path}: not a string ({_show(v)})"] = None
    return None


def as_float(v: Any, path: str, notes: Notes) -> float | None:
    """A finite double; ints up to 2**53 and decimal strings convert, bools and NaN do not."""
    t = type(v)
    if t is float:
        if v - v == 0.0:  # false for NaN and +-Infinity
            return v
        notes[f"{path}: not a finite number ({v!r})"] = None
        return None
    if v is None:
        return None
    if t is int or (isinstance(v, int) and t is not bool):
        if -_EXACT_DOUBLE <= v <= _EXACT_DOUBLE:
            return float(v)
        notes[f"{path}: integer not exactly representable as a double ({_show(v)})"] = None
        return None
    if t is str and _NUMBER.fullmatch(v):
        f = float(v)
        if f - f == 0.0:
            return f
    notes[f"{path}: not a number ({_show(v)})"] = None
    return None


def as_int(v: Any, path: str, notes: Notes) -> int | None:
    """An int64; integral floats and integral decimal strings convert, bools do not."""
    t = type(v)
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
        notes[f"{path}: integer out of int64 range ({_show(v)})"] = None
        return None
    if v is None:
        return None
    if t is float:
        if not v - v == 0.0:
            notes[f"{path}: not a finite number ({v!r})"] = None
            return None
        if v.is_integer() and _INT64_MIN <= v <= _INT64_MAX:
            return int(v)
    elif t is str and _NUMBER.fullmatch(v):
        try:
            d = Decimal(v)
            if _INT64_MIN <= d <= _INT64_MAX and d == d.to_integral_value():
                return int(d)
        except InvalidOperation:
            pass
    elif isinstance(v, int) and not isinstance(v, bool):
        return as_int(int(v), path, notes)
    notes[f"{path}: not an integer ({_show(v)})"] = None
    return None


def as_bool(v: Any, path: str, notes: Notes) -> bool | None:
    """A bool; the strings "true"/"false" (any case) convert, numbers do not."""
    if v is True or v is False or v is None:
        return v
    if type(v) is str:
        low = v.lower()
        if low == "true":
            return True
        if low == "false":
            return False
    notes[f"{path}: not a boolean ({_show(v)})"] = None
    return None


def as_timestamp(v: Any, path: str, notes: Notes) -> int | None:
    """Microseconds since the epoch (UTC) of an ISO 8601 date-time; naive means UTC."""
    if v is None:
        return None
    if type(v) is str and ("T" in v or " " in v):
        try:
            ts = datetime.fromisoformat(v)
            ts = ts.replace(tzinfo=_UTC) if ts.tzinfo is None else ts
            micros = (ts - _EPOCH) // _MICROSECOND
        except (ValueError, OverflowError):
            pass
        else:
            m = _FRACTION.search(v)
            if m and m[1][6:].strip("0"):
                notes[f"{path}: sub-microsecond digits cut ({_show(v)})"] = None
            return micros
    notes[f"{path}: not an ISO 8601 timestamp ({_show(v)})"] = None
    return None


# --- the long metrics table ----------------------------------------------------------------

MetricVisitor = Callable[[Any, str, Notes], None]


def _metric_collector(path_ids: dict[str, int], out_paths: list[int],
                      out_values: list[float]) -> MetricVisitor:
    """A visitor appending (path id, value) for each finite numeric leaf, in document order."""
    add_path, add_value = out_paths.append, out_values.append
    seg = path_segment

    def add(path: str, v: Any, notes: Notes) -> None:
        if type(v) is float:
            if not v - v == 0.0:
                notes[f"{_short(path)}: not a finite number ({v!r})"] = None
                return
        elif not -_EXACT_DOUBLE <= v <= _EXACT_DOUBLE:
            notes[f"{_short(path)}: integer not exactly representable as a double ({_show(v)})"] = None
            return
        pid = path_ids.get(path)
        if pid is None:
            pid = path_ids[path] = len(path_ids)
        add_path(pid)
        add_value(float(v))

    def walk(node: Any, path: str, depth: int, notes: Notes) -> None:
        keyed = type(node) is dict
        for k, v in (node.items() if keyed else enumerate(node)):
            t = type(v)
            if t is float or t is int:
                add(f"{path}.{seg(k) if keyed else k}", v, notes)
            elif (t is dict or t is list) and v:
                child = f"{path}.{seg(k) if keyed else k}"
                if depth + 1 < MAX_DEPTH:
                    walk(v, child, depth + 1, notes)
                else:
                    notes[f"{_short(child)}: nested deeper than {MAX_DEPTH} levels, "
                          "not in model_metrics"] = None

    def visit(value: Any, root: str, notes: Notes) -> None:
        t = type(value)
        if t is float or t is int:
            add(root, value, notes)
        elif (t is dict or t is list) and value:
            walk(value, root, 1, notes)

    return visit


# --- one record ----------------------------------------------------------------------------

_PM_FLOAT_PATHS = tuple((k, "performance_metrics." + k) for k in _PM_FLOAT)
_PM_INT_PATHS = tuple((k, "performance_metrics." + k) for k in _PM_INT)
_NO_PM = (None,) * len(_PM_KEYS)
_NO_EVAL = (None,) * 12


def _performance(pm: Any, extra: dict[str, Any], notes: Notes) -> tuple[Any, ...]:
    """pm_* values in ``_PM_FLOAT + _PM_INT`` order; unknown keys go to ``extra``."""
    if pm is None:
        return _NO_PM
    if type(pm) is not dict:
        notes[f"performance_metrics: not an object ({_kind(pm)}), kept in extra_json"] = None
        extra["performance_metrics"] = pm
        return _NO_PM
    g = pm.get
    unknown = pm.keys() - _PM_KEYS
    if unknown:
        extra["performance_metrics"] = {k: pm[k] for k in unknown}
    return (*(as_float(g(k), p, notes) for k, p in _PM_FLOAT_PATHS),
            *(as_int(g(k), p, notes) for k, p in _PM_INT_PATHS))


def _evaluation(ev: Any, notes: Notes) -> tuple[Any, ...]:
    """(id, status, method, created_at, completed_at, raw_answers_count, total_questions,
    accuracy, metrics.accuracy, metrics.uncertainty, metrics.domain_violations, metrics.overall_score)."""
    if ev is None:
        return _NO_EVAL
    if type(ev) is not dict:
        notes[f"evaluation_data: not an object ({_kind(ev)}), kept in evaluation_data_json"] = None
        return _NO_EVAL
    g = ev.get
    m = g("metrics")
    if type(m) is dict:
        mg = m.get
        metrics = (
            as_float(mg("accuracy"), "evaluation_data.metrics.accuracy", notes),
            as_float(mg("uncertainty"), "evaluation_data.metrics.uncertainty", notes),
            as_int(mg("domain_violations"), "evaluation_data.metrics.domain_violations", notes),
            as_float(mg("overall_score"), "evaluation_data.metrics.overall_score", notes),
        )
    else:
        if m is not None:
            notes[f"evaluation_data.metrics: not an object ({_kind(m)})"] = None
        metrics = (None, None, None, None)
    return (
        as_str(g("evaluation_id"), "evaluation_data.evaluation_id", notes),
        as_str(g("status"), "evaluation_data.status", notes),
        as_str(g("method"), "evaluation_data.method", notes),
        as_timestamp(g("created_at"), "evaluation_data.created_at", notes),
        as_timestamp(g("completed_at"), "evaluation_data.completed_at", notes),
        as_int(g("raw_answers_count"), "evaluation_data.raw_answers_count", notes),
        as_int(g("total_questions"), "evaluation_data.total_questions", notes),
        as_float(g("accuracy"), "evaluation_data.accuracy", notes),
        *metrics,
    )


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _snapshot_row(rec: dict[str, Any], notes: Notes) -> tuple[tuple[Any, ...], tuple[Any, ...], str | None]:
    """(snapshot columns ``model_id`` .. ``evaluation_data_json`` minus the per-slot constants,
    the evaluation tuple, the evaluation JSON)."""
    g = rec.get
    model_id = rec["id"]
    alignment_id = as_str(g("alignment_id"), "alignment_id", notes)
    extra: dict[str, Any] = {}
    unknown = rec.keys() - _TOP_KEYS
    if unknown:
        extra.update((k if type(k) is str else str(k), rec[k]) for k in unknown)
    pm = _performance(g("performance_metrics"), extra, notes)
    ev_raw = g("evaluation_data")
    ev = _evaluation(ev_raw, notes)
    ev_json = None if ev_raw is None else to_json(ev_raw, "evaluation_data", notes)
    # pm: accuracy, uncertainty, average_response_time, accuracy_before, accuracy_after,
    #     uncertainty_before, uncertainty_after, domain_violations, .._before, .._after
    row = (
        model_id,
        alignment_id or model_id,
        alignment_id,
        as_str(g("name"), "name", notes),
        as_str(g("base_model"), "base_model", notes),
        as_str(g("alignment_project"), "alignment_project", notes),
        as_timestamp(g("created_date"), "created_date", notes),
        as_str(g("status"), "status", notes),
        as_str(g("deployment_status"), "deployment_status", notes),
        as_str(g("endpoint"), "endpoint", notes),
        as_str(g("creator"), "creator", notes),
        as_int(g("usage_count"), "usage_count", notes),
        as_timestamp(g("last_used"), "last_used", notes),
        as_bool(g("downloadable"), "downloadable", notes),
        as_bool(g("conversation_saving_enabled"), "conversation_saving_enabled", notes),
        _coalesce(pm[0], pm[4], ev[8], ev[7]),
        _coalesce(pm[1], pm[6], ev[9]),
        _coalesce(pm[7], pm[9], ev[10]),
        pm[2],
        pm[0], pm[1], pm[7], pm[2], pm[3], pm[4], pm[5], pm[6], pm[8], pm[9],
        *ev,
        to_json(extra, "", notes) if extra else None,
        ev_json,
    )
    return row, ev, ev_json


def _quarantine_reason(position: int, rec: Any, first_seen: dict[str, int]) -> str | None:
    if not isinstance(rec, dict):
        return f"record is not an object ({_kind(rec)})"
    mid = rec.get("id")
    if mid is None:
        return "missing id"
    if type(mid) is not str:
        return f"id is not a string ({_kind(mid)})"
    if not mid:
        return "id is an empty string"
    if _bad_text(mid):
        return "id contains a NUL character or an unpaired surrogate"
    first = first_seen.setdefault(mid, position)
    if first != position:
        return f"duplicate id (first seen at position {first})"
    return None


def _raw_json(rec: Any) -> str:
    """The quarantined record as JSON (NaN/Infinity written as Python writes them), else repr."""
    try:
        text = json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = repr(rec)
    if not text.isascii() and _bad_text(text):
        text = _UNSAFE_IN_PATH.sub(_escape_char, text)
    return text


# --- the public function -------------------------------------------------------------------

def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(_UTC)


def flatten_models(models: list[Any], *, account_id: str, snapshot_at: datetime,
                   fetched_at: datetime) -> Flattened:
    """Flatten one answer's ``domain_aligned_models`` list into the declared slot tables.

    ``snapshot_at`` and ``fetched_at`` must be timezone-aware (they are stored in UTC);
    ``snapshot_date`` is the UTC date of ``snapshot_at``. Raises ValueError for bad arguments,
    never for bad records: those are quarantined or reported in ``quality_issues``.
    """
    if not isinstance(account_id, str) or not account_id:
        raise ValueError(f"account_id must be a non-empty string, got {account_id!r}")
    snapshot_at = _utc(snapshot_at, "snapshot_at")
    fetched_at = _utc(fetched_at, "fetched_at")

    rows: list[tuple[Any, ...]] = []
    path_ids: dict[str, int] = {}
    metric_rows: list[int] = []   # index into rows, per metric
    metric_paths: list[int] = []  # index into path_ids, per metric
    metric_values: list[float] = []
    visit = _metric_collector(path_ids, metric_paths, metric_values)
    evaluations: list[tuple[Any, ...]] = []
    evaluation_json: dict[str, str] = {}
    quarantine: list[tuple[int, str, str]] = []
    first_seen: dict[str, int] = {}
    coerced = 0

    for position, rec in enumerate(models):
        reason = _quarantine_reason(position, rec, first_seen)
        if reason is not None:
            quarantine.append((position, reason, _raw_json(rec)))
            continue
        notes: Notes = {}
        row, ev, ev_json = _snapshot_row(rec, notes)
        n_before = len(metric_values)
        for field in ("performance_metrics", "evaluation_data"):
            value = rec.get(field)
            if value is not None:
                visit(value, field, notes)
        metric_rows.extend([len(rows)] * (len(metric_values) - n_before))
        if ev[0]:
            kept = evaluation_json.get(ev[0])
            if kept is None:
                evaluation_json[ev[0]] = ev_json  # type: ignore[assignment]
                evaluations.append((ev[0], row[0], row[1], *ev[1:7], _coalesce(ev[8], ev[7]),
                                    ev[9], ev[10], ev[11], ev_json))
            elif kept != ev_json:
                notes[f"evaluation_data.evaluation_id: {_show(ev[0])} seen earlier in this answer "
                      "with different content; evaluations keeps the first"] = None
        coerced += len(notes)
        rows.append((*row, json.dumps(list(notes), ensure_ascii=False) if notes else None))

    snapshots = _snapshots_table(rows, account_id, snapshot_at, fetched_at)
    return Flattened(
        snapshots=snapshots,
        metrics=_metrics_table(snapshots, metric_rows, metric_paths, list(path_ids),
                               metric_values, account_id, snapshot_at),
        evaluations=_evaluations_table(evaluations, account_id, snapshot_at),
        quarantine=_quarantine_table(quarantine, account_id, snapshot_at),
        coerced_count=coerced,
    )


# --- tables --------------------------------------------------------------------------------

def _constant(value: Any, type_: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, type=type_), n)


def _table(spec: schemas.TableSpec, columns: dict[str, Any], n: int, account_id: str,
           snapshot_at: datetime) -> pa.Table:
    """Assemble ``spec``'s table from lists / arrays; constant columns are filled in here."""
    constants = {"account_id": account_id, "snapshot_at": snapshot_at,
                 "snapshot_date": snapshot_at.date(), "first_seen_at": snapshot_at,
                 "last_seen_at": snapshot_at}
    arrays = []
    for f in spec.schema:
        col = columns.get(f.name)
        if col is None:
            col = _constant(constants[f.name], f.type, n)
        elif not isinstance(col, pa.Array):
            col = pa.array(col, type=f.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def _columns(names: list[str], rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    if not rows:
        return {name: [] for name in names}
    return dict(zip(names, map(list, zip(*rows))))


_SNAPSHOT_COLUMNS = ["model_id"] + [f.name for f in schemas.MODEL_SNAPSHOTS.schema][5:]
_EVALUATION_COLUMNS = [f.name for f in schemas.EVALUATIONS.schema
                       if f.name not in ("account_id", "first_seen_at", "last_seen_at")]


def _snapshots_table(rows: list[tuple[Any, ...]], account_id: str, snapshot_at: datetime,
                     fetched_at: datetime) -> pa.Table:
    columns: dict[str, Any] = _columns(_SNAPSHOT_COLUMNS, rows)
    columns["fetched_at"] = _constant(fetched_at, schemas.TS, len(rows))
    return _table(schemas.MODEL_SNAPSHOTS, columns, len(rows), account_id, snapshot_at)


def _metrics_table(snapshots: pa.Table, rows: list[int], path_ids: list[int], paths: list[str],
                   values: list[float], account_id: str, snapshot_at: datetime) -> pa.Table:
    take = pa.array(rows, type=pa.int64())
    metric = pa.array(paths, type=pa.string()).take(pa.array(path_ids, type=pa.int32()))
    columns = {"model_id": snapshots.column("model_id").combine_chunks().take(take),
               "model_key": snapshots.column("model_key").combine_chunks().take(take),
               "metric": metric, "value": values}
    return _table(schemas.MODEL_METRICS, columns, len(values), account_id, snapshot_at)


def _evaluations_table(rows: list[tuple[Any, ...]], account_id: str,
                       snapshot_at: datetime) -> pa.Table:
    return _table(schemas.EVALUATIONS, _columns(_EVALUATION_COLUMNS, rows), len(rows),
                  account_id, snapshot_at)


def _quarantine_table(rows: list[tuple[int, str, str]], account_id: str,
                      snapshot_at: datetime) -> pa.Table:
    return _table(schemas.QUARANTINE, _columns(["position", "reason", "raw_json"], rows),
                  len(rows), account_id, snapshot_at)
