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
* A value outside the range the vendor documents -- a negative ``usage_count``, count or
  ``average_response_time``; an accuracy or uncertainty outside [0, 1] -- is kept as reported
  (it is what the API said) and flagged in ``quality_issues``; nothing is clamped.
* Text keeps every character except NUL and unpaired surrogates (PostgreSQL and UTF-8 cannot
  hold them): each becomes U+FFFD and is reported.
* ``coerced_count`` is the number of notes written to ``quality_issues`` across all rows.
* ``model_metrics`` holds one row per finite int/float (not bool) found under
  ``performance_metrics`` and ``evaluation_data``; numeric strings are not leaves. A record's rows
  come ``performance_metrics`` first, then ``evaluation_data``, keys in sorted order at every level
  (list items by index), however the vendor orders its keys. ``metric`` is the dotted path from
  the model object, list items use their index, and a key's ``\\`` and ``.`` are escaped as
  ``\\\\`` and ``\\.`` (NUL and unpaired surrogates as ``\\uXXXX``), so a path splits back into
  its keys without ambiguity. Paths stop at 64 segments (reported); ints that a
  double cannot hold exactly are reported, not rounded.
* ``model_metric_lists`` holds the same values as the warehouse stores them: one row per snapshot
  with metrics, its paths and values as two lists in ``model_metrics``' order.
* JSON columns are compact, key-sorted, non-ASCII kept; non-finite numbers in them become null
  (reported) so they stay valid JSON; unpaired surrogates are written as ``\\uXXXX`` escapes.

Two paths give the same tables, byte for byte (``tests/test_flatten_paths.py``): records that
``model_decoder`` decoded (the documented shape, typed) are read a column at a time; anything else,
and any batch where a decoded record needs a rule above (a duplicate or empty id, a value a column
cannot hold), goes value by value.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, cast

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from msgspec import UNSET

from nugen_etl import schemas
from nugen_etl.coercion import (
    EPOCH,
    EXACT_DOUBLE,
    MICROSECOND,
    UNSAFE_IN_PATH,
    Notes,
    bad_text,
    escape_char,
    json_kind,
    path_segment,
    shorten,
    show_value,
    to_json,
    typed_column,
)
from nugen_etl.model_decoder import (
    DecodedModels,
    EvaluationData,
    EvaluationMetrics,
    ModelRecord,
    PerformanceMetrics,
    evaluation_json,
)
from nugen_etl.records import PackedTables, SlotTables

MAX_DEPTH = 64  # most segments a metric path may have; deeper values stay in the JSON only


# The documented shape (model_decoder's structs) is the one declaration of the answer's fields.
_PM_INT = tuple(f.name for f in msgspec.structs.fields(PerformanceMetrics) if f.type == int | None)
_PM_FLOAT = tuple(f.name for f in msgspec.structs.fields(PerformanceMetrics) if f.name not in _PM_INT)
_PM_KEYS = frozenset(_PM_FLOAT + _PM_INT)
# Documented ranges (column -> path in the answer): flagged when outside, never altered.
_UNIT_INTERVAL = {
    f"pm_{k}": f"performance_metrics.{k}"
    for k in ("accuracy", "uncertainty", "accuracy_before", "accuracy_after", "uncertainty_before", "uncertainty_after")
}
_UNIT_INTERVAL |= {
    "eval_accuracy": "evaluation_data.accuracy",
    "eval_metrics_accuracy": "evaluation_data.metrics.accuracy",
    "eval_metrics_uncertainty": "evaluation_data.metrics.uncertainty",
}
_NON_NEGATIVE = {
    "usage_count": "usage_count",
    "pm_average_response_time": "performance_metrics.average_response_time",
    "eval_raw_answers_count": "evaluation_data.raw_answers_count",
    "eval_total_questions": "evaluation_data.total_questions",
    "eval_metrics_domain_violations": "evaluation_data.metrics.domain_violations",
}
_NON_NEGATIVE |= {f"pm_{k}": f"performance_metrics.{k}" for k in _PM_INT}
_TOP_KEYS = frozenset(ModelRecord.__struct_fields__)


@dataclass(frozen=True)
class Flattened:
    """The slot tables of one answer, plus how many values were reported as coerced.

    The tables are the answer's slices of the tables its ``flatten_answers`` call built; ``tables()``
    hands them on as ``SlotTables``, so a batch of answers flattened together is gathered whole."""

    slot: SlotTables
    coerced_count: int

    @property
    def snapshots(self) -> pa.Table:
        return self.slot[schemas.MODEL_SNAPSHOTS.name]

    @property
    def metrics(self) -> pa.Table:
        return self.slot[schemas.MODEL_METRICS.name]

    @property
    def metric_lists(self) -> pa.Table:
        return self.slot[schemas.MODEL_METRIC_LISTS.name]

    @property
    def evaluations(self) -> pa.Table:
        return self.slot[schemas.EVALUATIONS.name]

    @property
    def quarantine(self) -> pa.Table:
        return self.slot[schemas.QUARANTINE.name]

    def tables(self) -> SlotTables:
        """The tables keyed by their ``schemas.TableSpec.name``."""
        return self.slot


# --- the long metrics table ----------------------------------------------------------------


class _MetricCollector:
    """Finds every finite numeric leaf as (row, path id, value), an object's keys in sorted order (so a
    record's metrics come in the same order however the vendor orders its keys).

    Paths live in a trie keyed by raw keys, so a path string is built (and escaped) once per
    distinct path in the call rather than once per value.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.rows: list[int] = []
        self.path_ids: list[int] = []
        self.values: list[float] = []
        self._roots: dict[str, list[Any]] = {}

    def visit(self, value: Any, root: str, row: int, notes: Notes) -> None:
        entry = self._roots.get(root)
        if entry is None:
            entry = self._roots[root] = [root, None, {}]
        t = type(value)
        if t is float or t is int:
            self._leaf(entry, value, row, notes)
        elif (t is dict or t is list) and value:
            self._walk(value, entry, 1, row, notes)

    def _leaf(self, entry: list[Any], v: Any, row: int, notes: Notes) -> None:
        if type(v) is float:
            if not v - v == 0.0:
                notes[f"{shorten(entry[0])}: not a finite number ({v!r})"] = None
                return
        elif not -EXACT_DOUBLE <= v <= EXACT_DOUBLE:
            notes[f"{shorten(entry[0])}: integer not exactly representable as a double ({show_value(v)})"] = None
            return
        pid = entry[1]
        if pid is None:
            pid = entry[1] = len(self.paths)
            self.paths.append(entry[0])
        self.rows.append(row)
        self.path_ids.append(pid)
        self.values.append(float(v))

    def _walk(self, node: Any, entry: list[Any], depth: int, row: int, notes: Notes) -> None:
        children: dict[Any, list[Any]] = entry[2]
        keyed = type(node) is dict
        rows, path_ids, values = self.rows, self.path_ids, self.values
        for k, v in sorted(node.items(), key=_by_key) if keyed else enumerate(node):
            t = type(v)
            if not (t is float or t is int or ((t is dict or t is list) and v)):
                continue
            child = children.get(k)
            if child is None:
                child = children[k] = [f"{entry[0]}.{path_segment(k) if keyed else k}", None, {}]
            if t is dict or t is list:
                if depth + 1 < MAX_DEPTH:
                    self._walk(v, child, depth + 1, row, notes)
                else:
                    notes[f"{shorten(child[0])}: nested deeper than {MAX_DEPTH} levels, not in model_metrics"] = None
            elif (v - v == 0.0) if t is float else (-EXACT_DOUBLE <= v <= EXACT_DOUBLE):
                # the common leaf, inlined: a finite double or an int a double holds exactly
                pid = child[1]
                if pid is None:
                    pid = child[1] = len(self.paths)
                    self.paths.append(child[0])
                rows.append(row)
                path_ids.append(pid)
                values.append(float(v))
            else:
                self._leaf(child, v, row, notes)


def _by_key(item: tuple[Any, Any]) -> str:
    return item[0] if type(item[0]) is str else str(item[0])


# --- records -------------------------------------------------------------------------------


def _quarantine_reason(position: int, rec: Any, first_seen: dict[str, int]) -> str | None:
    if not isinstance(rec, dict):
        return f"record is not an object ({json_kind(rec)})"
    mid = rec.get("id")
    if mid is None:
        return "missing id"
    if type(mid) is not str:
        return f"id is not a string ({json_kind(mid)})"
    if not mid:
        return "id is an empty string"
    if bad_text(mid):
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
    if not text.isascii() and bad_text(text):
        text = UNSAFE_IN_PATH.sub(escape_char, text)
    return text


def _objects(values: list[Any], label: str, issues: list[Notes], kept_in: str) -> list[dict[str, Any]]:
    """``values`` with anything but an object replaced by {}; a non-null non-object is noted."""
    out = []
    for notes, v in zip(issues, values, strict=False):
        if type(v) is dict:
            out.append(v)
        else:
            if v is not None:
                notes[f"{label}: not an object ({json_kind(v)}){kept_in}"] = None
            out.append({})
    return out


def _extra_json(recs: list[dict[str, Any]], issues: list[Notes]) -> list[str | None]:
    """Unknown top-level fields and unknown performance_metrics keys, as JSON (else None)."""
    out: list[str | None] = []
    for rec, notes in zip(recs, issues, strict=False):
        extra: dict[str, Any] = {}
        unknown = rec.keys() - _TOP_KEYS
        if unknown:
            extra.update((k if type(k) is str else str(k), rec[k]) for k in unknown)
        pm = rec.get("performance_metrics")
        if type(pm) is dict:
            unknown = pm.keys() - _PM_KEYS
            if unknown:
                extra["performance_metrics"] = {k: pm[k] for k in unknown}
        elif pm is not None:
            extra["performance_metrics"] = pm
        out.append(to_json(extra, "", notes) if extra else None)
    return out


_EVAL_FIELDS = (  # (column, key in evaluation_data, type)
    ("eval_id", "evaluation_id", pa.string()),
    ("eval_status", "status", pa.string()),
    ("eval_method", "method", pa.string()),
    ("eval_created_at", "created_at", schemas.TS),
    ("eval_completed_at", "completed_at", schemas.TS),
    ("eval_raw_answers_count", "raw_answers_count", pa.int64()),
    ("eval_total_questions", "total_questions", pa.int64()),
    ("eval_accuracy", "accuracy", pa.float64()),
)
_EVAL_COLUMN = {key: name for name, key, _ in _EVAL_FIELDS}
_EM_KEYS = ("accuracy", "uncertainty", "domain_violations", "overall_score")  # evaluation_data.metrics
# The top-level fields that are columns of their own, in the answer's order (notes come in column order).
_TOP_FIELDS = tuple(f for f in ModelRecord.__struct_fields__ if f not in ("id", "performance_metrics", "evaluation_data"))


class _DictRecords:
    """The records as ``json.loads`` gave them: any shape. Nested objects are checked when first
    asked for, so notes come in column order."""

    typed = False

    def __init__(self, recs: list[dict[str, Any]], issues: list[Notes]) -> None:
        self.recs, self._issues = recs, issues
        self._pms: list[dict[str, Any]] | None = None
        self._raw_evs: list[Any] | None = None
        self._evs: list[dict[str, Any]] | None = None
        self._ems: list[dict[str, Any]] | None = None

    def ids(self) -> list[str]:
        return [r["id"] for r in self.recs]

    def top(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.recs]

    def pm(self, key: str) -> list[Any]:
        if self._pms is None:
            self._pms = _objects(
                [r.get("performance_metrics") for r in self.recs], "performance_metrics", self._issues, ", kept in extra_json"
            )
        return [p.get(key) for p in self._pms]

    def ev(self, key: str) -> list[Any]:
        return [e.get(key) for e in self._evaluations()]

    def em(self, key: str) -> list[Any]:
        if self._ems is None:
            self._ems = _objects([e.get("metrics") for e in self._evaluations()], "evaluation_data.metrics", self._issues, "")
        return [m.get(key) for m in self._ems]

    def _evaluations(self) -> list[dict[str, Any]]:
        if self._evs is None:
            self._raw_evs = [r.get("evaluation_data") for r in self.recs]
            self._evs = _objects(self._raw_evs, "evaluation_data", self._issues, ", kept in evaluation_data_json")
        return self._evs

    def extra_json(self) -> pa.Array:
        return pa.array(_extra_json(self.recs, self._issues), type=pa.string())

    def evaluation_json(self, cols: dict[str, pa.Array]) -> pa.Array:
        self._evaluations()
        assert self._raw_evs is not None
        return pa.array(
            [None if e is None else to_json(e, "evaluation_data", n) for e, n in zip(self._raw_evs, self._issues, strict=False)],
            type=pa.string(),
        )


class _NeedsGeneralPath(Exception):
    """Decoded records that the column-at-a-time path would not flatten exactly as the general path does."""


# Stand-ins for an absent or null object: every key null, not UNSET, so that a batch in which only some
# records have an evaluation needs no UNSET -> None pass over its columns.
_NO_PM = PerformanceMetrics()
_NO_EV = EvaluationData(**dict.fromkeys(EvaluationData.__struct_fields__, None))
_NO_EM = EvaluationMetrics(**dict.fromkeys(EvaluationMetrics.__struct_fields__, None))
_EVAL_FLOATS = ("eval_accuracy", "eval_metrics_accuracy", "eval_metrics_uncertainty", "eval_metrics_overall_score")


class _DecodedRecords:
    """Records decoded into ``model_decoder``'s typed structs: every field has its documented JSON type,
    so a column is a list of attribute reads. Keeps how many values of each list were null, for the
    metrics check."""

    typed = True

    def __init__(self, recs: list[ModelRecord]) -> None:
        self.recs = recs
        self.nulls: dict[str, int] = {}  # column -> how many of the values it was built from were null
        self._pms: list[PerformanceMetrics] | None = None
        self._evs: list[EvaluationData] | None = None
        self._ems: list[EvaluationMetrics] | None = None

    def ids(self) -> list[str]:
        return list(map(_ID, self.recs))

    def top(self, name: str) -> list[Any]:
        return self._counted(name, list(map(attrgetter(name), self.recs)))

    def pm(self, key: str) -> list[Any]:
        if self._pms is None:
            self._pms = [_NO_PM if p is None else p for p in map(_PM, self.recs)]
        return self._counted("pm_" + key, list(map(attrgetter(key), self._pms)))

    def ev(self, key: str) -> list[Any]:
        return self._counted(_EVAL_COLUMN[key], _unset_to_none(list(map(attrgetter(key), self._evaluations()))))

    def em(self, key: str) -> list[Any]:
        if self._ems is None:
            self._ems = [m if type(m) is EvaluationMetrics else _NO_EM for m in map(_EM, self._evaluations())]
        return self._counted("eval_metrics_" + key, _unset_to_none(list(map(attrgetter(key), self._ems))))

    def _evaluations(self) -> list[EvaluationData]:
        if self._evs is None:
            self._evs = [_NO_EV if e is None else e for e in map(_EV, self.recs)]
        return self._evs

    def _counted(self, column: str, values: list[Any]) -> list[Any]:
        if column in _LEAF_NAMES:
            self.nulls[column] = values.count(None)
        return values

    def extra_json(self) -> pa.Array:
        return pa.nulls(len(self.recs), pa.string())  # unknown keys never decode

    def evaluation_json(self, cols: dict[str, pa.Array]) -> pa.Array:
        for name in _EVAL_FLOATS:  # msgspec writes a float as Python's repr does only in this range
            size = np.abs(cols[name].to_numpy(zero_copy_only=False))  # a null is NaN: never outside
            if ((size != 0) & ((size < 1e-4) | (size >= 1e16))).any():
                raise _NeedsGeneralPath(f"{name}: a float that JSON text writes with an exponent")
        return pa.array(evaluation_json(list(map(_EV, self.recs))), type=pa.string())


_ID, _PM, _EV, _EM = (attrgetter(n) for n in ("id", "performance_metrics", "evaluation_data", "metrics"))


def _unset_to_none(values: list[Any]) -> list[Any]:
    """An absent key (msgspec's UNSET) as None; the scan alone when none is absent, the common case."""
    if UNSET not in values:
        return values
    return [None if v is UNSET else v for v in values]


Records = _DictRecords | _DecodedRecords


def _snapshot_columns(source: Records, issues: list[Notes]) -> dict[str, pa.Array]:
    """Every model_snapshots column that varies by record, except quality_issues."""
    types = dict(_fields(schemas.MODEL_SNAPSHOTS))
    typed = source.typed
    cols: dict[str, pa.Array] = {"model_id": pa.array(source.ids(), type=pa.string())}
    for name in _TOP_FIELDS:
        cols[name] = typed_column(source.top(name), types[name], name, issues, typed=typed)
    cols["model_key"] = pc.coalesce(pc.if_else(pc.equal(cols["alignment_id"], ""), None, cols["alignment_id"]), cols["model_id"])

    for key in _PM_FLOAT + _PM_INT:
        cols["pm_" + key] = typed_column(source.pm(key), types["pm_" + key], "performance_metrics." + key, issues, typed=typed)
    for name, key, type_ in _EVAL_FIELDS:
        cols[name] = typed_column(source.ev(key), type_, "evaluation_data." + key, issues, typed=typed)
    for key in _EM_KEYS:
        name = "eval_metrics_" + key
        cols[name] = typed_column(source.em(key), types[name], "evaluation_data.metrics." + key, issues, typed=typed)

    _flag_out_of_range(cols, issues)
    cols["accuracy"] = pc.coalesce(cols["pm_accuracy"], cols["pm_accuracy_after"], cols["eval_metrics_accuracy"], cols["eval_accuracy"])
    cols["uncertainty"] = pc.coalesce(cols["pm_uncertainty"], cols["pm_uncertainty_after"], cols["eval_metrics_uncertainty"])
    cols["domain_violations"] = pc.coalesce(
        cols["pm_domain_violations"], cols["pm_domain_violations_after"], cols["eval_metrics_domain_violations"]
    )
    cols["average_response_time"] = cols["pm_average_response_time"]
    cols["extra_json"] = source.extra_json()
    cols["evaluation_data_json"] = source.evaluation_json(cols)
    return cols


def _flag_out_of_range(cols: dict[str, pa.Array], issues: list[Notes]) -> None:
    """Note each value outside its documented range; the value itself stays as reported."""
    for ranges, high, what in (
        (_UNIT_INTERVAL, 1, "outside the documented range [0, 1]"),
        (_NON_NEGATIVE, None, "negative where the API documents >= 0"),
    ):
        for name, path in ranges.items():
            col = cols[name]
            if col.null_count == len(col):
                continue
            low_high = pc.min_max(col)
            if low_high["min"].as_py() >= 0 and (high is None or low_high["max"].as_py() <= high):
                continue  # the common case: nothing to flag
            for row, value in enumerate(col.to_pylist()):
                if value is not None and (value < 0 or (high is not None and value > high)):
                    issues[row][f"{path}: {value!r} {what}, kept as reported"] = None


def _evaluation_rows(cols: dict[str, pa.Array], issues: list[Notes], bounds: list[int]) -> list[int]:
    """Snapshot rows that open an evaluations row: a non-empty evaluation_id, first one within
    its answer wins (``bounds``: each answer's first row, then the end)."""
    ids = cols["eval_id"].to_pylist()
    rows = [i for i, eval_id in enumerate(ids) if eval_id]
    if len(set(map(ids.__getitem__, rows))) == len(rows):  # the common case: no id repeats anywhere
        return rows
    first: dict[str, int] = {}
    rows = []
    ev_json = cols["evaluation_data_json"]
    starts = set(bounds)
    for i, eval_id in enumerate(ids):
        if i in starts:
            first = {}
        if not eval_id:
            continue
        j = first.setdefault(eval_id, i)
        if j == i:
            rows.append(i)
        elif ev_json[i] != ev_json[j]:
            issues[i][
                f"evaluation_data.evaluation_id: {show_value(eval_id)} seen earlier in this "
                "answer with different content; evaluations keeps the first"
            ] = None
    return rows


# --- the public function -------------------------------------------------------------------


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def flatten_models(models: list[Any], *, account_id: str, snapshot_at: datetime, fetched_at: datetime) -> Flattened:
    """Flatten one answer's ``domain_aligned_models`` list into the declared slot tables.

    ``snapshot_at`` and ``fetched_at`` must be timezone-aware (they are stored in UTC);
    ``snapshot_date`` is the UTC date of ``snapshot_at``. Raises ValueError for bad arguments,
    never for bad records: those are quarantined or reported in ``quality_issues``.
    """
    return flatten_answers([(models, account_id, snapshot_at, fetched_at)])[0]


Answer = tuple[list[Any], str, datetime, datetime]  # (models, account_id, snapshot_at, fetched_at)


def flatten_answers(answers: Sequence[Answer]) -> list[Flattened]:
    """Flatten several answers in one pass: element ``i`` has the same tables, value for value,
    as ``flatten_models(*answers[i])`` (Parquet bytes included).

    The per-call cost of building Arrow columns (~2 ms) dominates a slot of a few dozen models;
    a replay flattens many slots at once and pays it once. Everything that is per answer stays
    per answer: quarantine positions, duplicate-id detection, the evaluations dedupe and
    ``coerced_count``. The tables of answer ``i`` are zero-copy slices of the batch's tables.
    """
    slots: list[tuple[str, datetime, datetime]] = []
    for _models, account_id, snapshot_at, fetched_at in answers:
        if not isinstance(account_id, str) or not account_id:
            raise ValueError(f"account_id must be a non-empty string, got {account_id!r}")
        slots.append((account_id, _utc(snapshot_at, "snapshot_at"), _utc(fetched_at, "fetched_at")))
    decoded = [i for i, (models, *_) in enumerate(answers) if isinstance(models, DecodedModels) and models]
    if not decoded:
        return _flatten_general([models for models, *_ in answers], slots)
    try:
        flats = _flatten_decoded([answers[i][0] for i in decoded], [slots[i] for i in decoded])  # type: ignore[misc]
    except _NeedsGeneralPath:
        return _flatten_general([_general(models) for models, *_ in answers], slots)
    if len(decoded) == len(answers):
        return flats
    taken = set(decoded)
    rest = [i for i in range(len(answers)) if i not in taken]
    out: list[Flattened | None] = [None] * len(answers)
    for i, flat in zip(decoded, flats, strict=False):
        out[i] = flat
    for i, flat in zip(rest, _flatten_general([_general(answers[i][0]) for i in rest], [slots[i] for i in rest]), strict=False):
        out[i] = flat
    return out  # type: ignore[return-value]


def _general(models: list[Any]) -> list[Any]:
    """An answer's models as the general path takes them: decoded records go back to ``json.loads``."""
    if isinstance(models, DecodedModels):
        return cast(list[Any], json.loads(models.body)["domain_aligned_models"])
    return models


def _flatten_general(answers: list[list[Any]], slots: list[tuple[str, datetime, datetime]]) -> list[Flattened]:
    """Any records, value by value: quarantine, coercion, unknown keys and every note."""
    recs: list[dict[str, Any]] = []
    quarantine: list[tuple[int, str, str]] = []
    rec_bounds, q_bounds = [0], [0]
    for models in answers:
        first_seen: dict[str, int] = {}  # duplicate ids are judged within one answer
        for position, rec in enumerate(models):
            reason = _quarantine_reason(position, rec, first_seen)
            if reason is None:
                recs.append(rec)
            else:
                quarantine.append((position, reason, _raw_json(rec)))
        rec_bounds.append(len(recs))
        q_bounds.append(len(quarantine))

    issues: list[Notes] = [{} for _ in recs]
    cols = _snapshot_columns(_DictRecords(recs, issues), issues)
    collector = _MetricCollector()
    for row, (rec, notes) in enumerate(zip(recs, issues, strict=False)):
        for field in ("performance_metrics", "evaluation_data"):
            value = rec.get(field)
            if value is not None:
                collector.visit(value, field, row, notes)
    metrics = _MetricRows(
        np.array(collector.rows, np.int64), np.array(collector.path_ids, np.int64), collector.paths, np.array(collector.values, np.float64)
    )
    return _assemble(cols, metrics, issues, quarantine, rec_bounds, q_bounds, slots)


def _flatten_decoded(answers: list[DecodedModels], slots: list[tuple[str, datetime, datetime]]) -> list[Flattened]:
    """Typed records (``model_decoder``), a column at a time. Raises ``_NeedsGeneralPath`` where the
    general path would quarantine a record or note a metric: it alone knows those rules."""
    recs: list[ModelRecord] = []
    rec_bounds = [0]
    for models in answers:
        ids = set(map(_ID, models))
        if len(ids) != len(models) or "" in ids:
            raise _NeedsGeneralPath("a duplicate or empty id")
        recs += models
        rec_bounds.append(len(recs))
    issues: list[Notes] = [{} for _ in recs]
    source = _DecodedRecords(recs)
    cols = _snapshot_columns(source, issues)
    return _assemble(cols, _decoded_metrics(cols, source.nulls), issues, [], rec_bounds, [0] * len(rec_bounds), slots)


def _assemble(
    cols: dict[str, pa.Array],
    metrics: _MetricRows,
    issues: list[Notes],
    quarantine: list[tuple[int, str, str]],
    rec_bounds: list[int],
    q_bounds: list[int],
    slots: list[tuple[str, datetime, datetime]],
) -> list[Flattened]:
    eval_row_list = _evaluation_rows(cols, issues, rec_bounds)
    eval_rows = pa.array(eval_row_list, type=pa.int64())
    noted = any(issues)
    cols["quality_issues"] = (
        pa.array([json.dumps(list(n), ensure_ascii=False) if n else None for n in issues], type=pa.string())
        if noted
        else pa.nulls(len(issues), pa.string())
    )

    consts = _Constants(slots)
    m_bounds = np.searchsorted(metrics.rows, rec_bounds, side="left").tolist()
    e_bounds = [bisect_left(eval_row_list, b) for b in rec_bounds]
    snapshots = _table(schemas.MODEL_SNAPSHOTS, cols, consts, rec_bounds)
    metrics_table = _metrics_table(metrics, cols, consts, m_bounds)
    evaluations = _evaluations_table(cols, eval_rows, consts, e_bounds)
    quarantined = _table(schemas.QUARANTINE, _columns(["position", "reason", "raw_json"], quarantine), consts, q_bounds)
    lists, l_bounds = _metric_lists_table(metrics, snapshots, metrics_table, rec_bounds)
    packed = PackedTables(
        {
            schemas.MODEL_SNAPSHOTS.name: snapshots,
            schemas.MODEL_METRICS.name: metrics_table,
            schemas.MODEL_METRIC_LISTS.name: lists,
            schemas.EVALUATIONS.name: evaluations,
            schemas.QUARANTINE.name: quarantined,
        },
        {
            schemas.MODEL_SNAPSHOTS.name: rec_bounds,
            schemas.MODEL_METRICS.name: m_bounds,
            schemas.MODEL_METRIC_LISTS.name: l_bounds,
            schemas.EVALUATIONS.name: e_bounds,
            schemas.QUARANTINE.name: q_bounds,
        },
    )
    return [Flattened(packed.slot(i), sum(map(len, issues[rec_bounds[i] : rec_bounds[i + 1]])) if noted else 0) for i in range(len(slots))]


# --- metrics of decoded records ------------------------------------------------------------


@dataclass(frozen=True)
class _MetricRows:
    """The long metrics table before its columns are filled in: per value, its record and path."""

    rows: np.ndarray  # int64: the record (snapshot row) each value belongs to, ascending
    path_ids: np.ndarray  # int64: index into ``paths``
    paths: list[str]
    values: np.ndarray  # float64


def _leaf_columns() -> list[tuple[str, str]]:
    """(metric path, model_snapshots column) of every numeric leaf a decoded record can hold, in the
    order the general path visits them: performance_metrics, then evaluation_data, keys sorted."""
    tree: dict[str, Any] = {
        "performance_metrics": {k: "pm_" + k for k in _PM_FLOAT + _PM_INT},
        "evaluation_data": {key: name for name, key, type_ in _EVAL_FIELDS if type_ in (pa.float64(), pa.int64())},
    }
    tree["evaluation_data"]["metrics"] = {k: "eval_metrics_" + k for k in _EM_KEYS}
    out: list[tuple[str, str]] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key in sorted(node):
            if isinstance(node[key], dict):
                walk(node[key], f"{prefix}{key}.")
            else:
                out.append((prefix + key, node[key]))

    for root in ("performance_metrics", "evaluation_data"):
        walk(tree[root], root + ".")
    return out


_LEAVES = _leaf_columns()
_LEAF_NAMES = frozenset(name for _, name in _LEAVES)


def _decoded_metrics(cols: dict[str, pa.Array], nulls: dict[str, int]) -> _MetricRows:
    """Every numeric leaf of decoded records, from their typed columns: one matrix, row-major."""
    columns = []
    for _, name in _LEAVES:
        col = cols[name]
        if col.null_count != nulls[name]:  # a value the column could not hold: the general path notes it
            raise _NeedsGeneralPath(f"{name}: a value the column could not hold")
        if col.type != pa.float64():
            try:
                col = col.cast(pa.float64())  # safe: refuses an int a double cannot hold exactly
            except pa.ArrowInvalid:
                raise _NeedsGeneralPath(f"{name}: an integer beyond a double") from None
        columns.append(col.to_numpy(zero_copy_only=False))  # nulls become NaN; no value is NaN
    matrix = np.column_stack(columns) if columns else np.empty((0, 0))
    rows, leaves = np.nonzero(~np.isnan(matrix))
    return _MetricRows(rows.astype(np.int64), leaves.astype(np.int64), [path for path, _ in _LEAVES], matrix[rows, leaves])


# --- tables --------------------------------------------------------------------------------


class _Constants:
    """The per-answer constant columns, repeated over each answer's rows."""

    def __init__(self, slots: list[tuple[str, datetime, datetime]]) -> None:
        self.slots = slots
        self._owners: dict[tuple[int, ...], pa.Array] = {}

    def column(self, name: str, type_: pa.DataType, bounds: list[int]) -> pa.Array:
        if name == "account_id":
            values: list[Any] = [a for a, _, _ in self.slots]
        elif name == "fetched_at":
            values = [f for _, _, f in self.slots]
        elif name == "snapshot_date":
            values = [s.date() for _, s, _ in self.slots]
        elif name in ("snapshot_at", "first_seen_at", "last_seen_at"):
            values = [s for _, s, _ in self.slots]
        else:
            raise KeyError(name)
        n = bounds[-1]
        if len(self.slots) == 1:
            return _repeat(values[0], type_, n)
        if type_ == schemas.TS:
            arr = pa.array([(v - EPOCH) // MICROSECOND for v in values], pa.int64())
        else:
            arr = pa.array(values, type_)
        return arr.take(self._owner(bounds)).view(type_) if type_ == schemas.TS else arr.take(self._owner(bounds))

    def _owner(self, bounds: list[int]) -> pa.Array:
        key = tuple(bounds)
        owner = self._owners.get(key)
        if owner is None:
            owner = self._owners[key] = pa.array(np.repeat(np.arange(len(bounds) - 1, dtype=np.int64), np.diff(bounds)))
        return owner


def _table(spec: schemas.TableSpec, columns: dict[str, Any], consts: _Constants, bounds: list[int]) -> pa.Table:
    """``spec``'s table from arrays or lists; the per-answer constant columns are filled in here
    (answer ``i`` owns rows ``bounds[i]:bounds[i + 1]``)."""
    arrays = []
    for name, type_ in _fields(spec):
        col = columns.get(name)
        if col is None:
            col = consts.column(name, type_, bounds)
        elif not isinstance(col, pa.Array):
            col = pa.array(col, type=type_)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=spec.schema)


_FIELDS: dict[str, tuple[tuple[str, pa.DataType], ...]] = {}


def _fields(spec: schemas.TableSpec) -> tuple[tuple[str, pa.DataType], ...]:
    """(name, type) of ``spec``'s columns, cached by table name (walking a pyarrow schema builds
    Field objects each time, and hashing a spec hashes its schema)."""
    found = _FIELDS.get(spec.name)
    if found is None:
        found = _FIELDS[spec.name] = tuple((f.name, f.type) for f in spec.schema)
    return found


def _repeat(value: Any, type_: pa.DataType, n: int) -> pa.Array:
    """``value`` ``n`` times. A timestamp goes through int64 microseconds: a tz-aware Arrow
    scalar made from a Python datetime costs about 0.1 ms, which dominated small slots."""
    if value is None:
        return pa.nulls(n, type_)
    if type_ == schemas.TS:
        return pa.repeat(pa.scalar((value - EPOCH) // MICROSECOND, pa.int64()), n).view(type_)
    return pa.repeat(pa.scalar(value, type_), n)


def _columns(names: list[str], rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    if not rows:
        return {name: [] for name in names}
    return dict(zip(names, map(list, zip(*rows, strict=False)), strict=False))


def _metrics_table(metrics: _MetricRows, cols: dict[str, pa.Array], consts: _Constants, bounds: list[int]) -> pa.Table:
    rows = pa.array(metrics.rows, type=pa.int64())
    return _table(
        schemas.MODEL_METRICS,
        {
            "model_id": cols["model_id"].take(rows),
            "model_key": cols["model_key"].take(rows),
            "metric": pa.array(metrics.paths, type=pa.string()).take(pa.array(metrics.path_ids, type=pa.int64())),
            "value": pa.array(metrics.values, type=pa.float64()),
        },
        consts,
        bounds,
    )


_LIST_KEYS = [name for name in schemas.MODEL_METRIC_LISTS.schema.names if not name.startswith("metric_")]


def _metric_lists_table(metrics: _MetricRows, snapshots: pa.Table, long: pa.Table, rec_bounds: list[int]) -> tuple[pa.Table, list[int]]:
    """The warehouse's form of the metrics (``MODEL_METRIC_LISTS``): one row per snapshot with at least
    one metric, its paths and values as two lists, in the long table's order (what
    ``warehouse.metric_lists.to_metric_lists`` computes from the long rows, without the search for
    runs: here each record's metrics are known to be one run, each path once)."""
    counts = np.bincount(metrics.rows, minlength=snapshots.num_rows)
    heads = np.flatnonzero(counts)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts[heads])]), pa.int32())
    table = snapshots.select(_LIST_KEYS).take(pa.array(heads, pa.int64()))
    table = table.append_column(
        schemas.MODEL_METRIC_LISTS.schema.field("metric_names"), [pa.ListArray.from_arrays(offsets, long["metric"].combine_chunks())]
    )
    table = table.append_column(
        schemas.MODEL_METRIC_LISTS.schema.field("metric_values"), [pa.ListArray.from_arrays(offsets, long["value"].combine_chunks())]
    )
    return table.cast(schemas.MODEL_METRIC_LISTS.schema), np.searchsorted(heads, rec_bounds).tolist()


_EVALUATION_SOURCES = {  # evaluations column -> model_snapshots column
    "evaluation_id": "eval_id",
    "model_id": "model_id",
    "model_key": "model_key",
    "status": "eval_status",
    "method": "eval_method",
    "created_at": "eval_created_at",
    "completed_at": "eval_completed_at",
    "raw_answers_count": "eval_raw_answers_count",
    "total_questions": "eval_total_questions",
    "uncertainty": "eval_metrics_uncertainty",
    "domain_violations": "eval_metrics_domain_violations",
    "overall_score": "eval_metrics_overall_score",
    "evaluation_data_json": "evaluation_data_json",
}


def _evaluations_table(cols: dict[str, pa.Array], rows: pa.Array, consts: _Constants, bounds: list[int]) -> pa.Table:
    out = {name: cols[source].take(rows) for name, source in _EVALUATION_SOURCES.items()}
    out["accuracy"] = pc.coalesce(cols["eval_metrics_accuracy"].take(rows), cols["eval_accuracy"].take(rows))
    return _table(schemas.EVALUATIONS, out, consts, bounds)
