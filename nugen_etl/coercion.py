"""Flattening's value rules: each value becomes its column's type only when that is lossless, and
anything lossy is noted for the row's ``quality_issues``; JSON text and metric path segments; whole
columns built at once when every value already fits (``flatten`` applies these; see its docstring for
the rules a caller may rely on)."""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from nugen_etl import schemas

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
EXACT_DOUBLE = 2**53  # beyond this an int may not survive the trip through float64
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)
_FRACTION = re.compile(r"[.,](\d{7,})", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")
UNSAFE_IN_PATH = re.compile("[\x00\ud800-\udfff]")
_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 2

Notes = dict[str, None]  # an insertion-ordered set: one note per problem, even when found twice


# --- small helpers -------------------------------------------------------------------------


def show_value(value: Any) -> str:
    """A short repr of an offending value for a note (about 80 characters at most)."""
    return _REPR.repr(value)


def shorten(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def json_kind(value: Any) -> str:
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


def bad_text(s: str) -> bool:
    """True if ``s`` holds a NUL or an unpaired surrogate (neither fits PostgreSQL text)."""
    return "\x00" in s or (not s.isascii() and _SURROGATE.search(s) is not None)


def escape_char(m: re.Match[str]) -> str:
    return f"\\u{ord(m[0]):04x}"


@lru_cache(maxsize=8192)
def path_segment(key: Any) -> str:
    r"""One object key as a metric path segment: ``\`` -> ``\\``, ``.`` -> ``\.``.

    NUL and unpaired surrogates become ``\uXXXX``; other characters are kept.

    >>> path_segment("accuracy")
    'accuracy'
    >>> print(path_segment("p.95"), path_segment("a\\b"))
    p\.95 a\\b
    """
    text: str = key if type(key) is str else str(key)
    if "\\" in text or "." in text:
        text = text.replace("\\", "\\\\").replace(".", "\\.")
    if bad_text(text):
        text = UNSAFE_IN_PATH.sub(escape_char, text)
    return text


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
        text = _SURROGATE.sub(escape_char, text)  # surrogates only occur inside JSON strings
    return text


def _repr_json(value: Any, label: str, notes: Notes) -> str:
    notes[f"{shorten(label or 'extra_json')}: not serialisable as JSON, kept as repr"] = None
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
            notes[f"{shorten(path)}: not a finite number ({node!r})"] = None
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
        if bad_text(v):
            if "\x00" in v:
                notes[f"{path}: NUL character replaced with U+FFFD"] = None
                v = v.replace("\x00", "\ufffd")
            if not v.isascii() and _SURROGATE.search(v):
                notes[f"{path}: unpaired surrogate replaced with U+FFFD"] = None
                v = _SURROGATE.sub("\ufffd", v)
        return cast(str, v)
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    notes[f"{path}: not a string ({show_value(v)})"] = None
    return None


def as_float(v: Any, path: str, notes: Notes) -> float | None:
    """A finite double; ints up to 2**53 and decimal strings convert, bools and NaN do not."""
    t = type(v)
    if t is float:
        if v - v == 0.0:  # false for NaN and +-Infinity
            return cast(float, v)
        notes[f"{path}: not a finite number ({v!r})"] = None
        return None
    if v is None:
        return None
    if t is int or (isinstance(v, int) and t is not bool):
        if -EXACT_DOUBLE <= v <= EXACT_DOUBLE:
            return float(v)
        notes[f"{path}: integer not exactly representable as a double ({show_value(v)})"] = None
        return None
    if t is str and _NUMBER.fullmatch(v):
        f = float(v)
        if f - f == 0.0:
            return f
    notes[f"{path}: not a number ({show_value(v)})"] = None
    return None


def as_int(v: Any, path: str, notes: Notes) -> int | None:
    """An int64; integral floats and integral decimal strings convert, bools do not."""
    t = type(v)
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return cast(int, v)
        notes[f"{path}: integer out of int64 range ({show_value(v)})"] = None
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
    notes[f"{path}: not an integer ({show_value(v)})"] = None
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
    notes[f"{path}: not a boolean ({show_value(v)})"] = None
    return None


def as_timestamp(v: Any, path: str, notes: Notes) -> int | None:
    """Microseconds since the epoch (UTC) of an ISO 8601 date-time; naive means UTC."""
    if v is None:
        return None
    if type(v) is str and ("T" in v or " " in v):
        try:
            ts = datetime.fromisoformat(v)
            ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
            micros = (ts - EPOCH) // MICROSECOND
        except (ValueError, OverflowError):
            pass
        else:
            m = _FRACTION.search(v)
            if m and m[1][6:].strip("0"):
                notes[f"{path}: sub-microsecond digits cut ({show_value(v)})"] = None
            return micros
    notes[f"{path}: not an ISO 8601 timestamp ({show_value(v)})"] = None
    return None


# --- whole columns: a fast path when every value already has the right type -----------------

_NONE = type(None)
_FAST_KINDS: dict[pa.DataType, frozenset[type]] = {
    pa.string(): frozenset({str, _NONE}),
    pa.float64(): frozenset({float, int, _NONE}),
    pa.int64(): frozenset({int, _NONE}),
    pa.bool_(): frozenset({bool, _NONE}),
}
_COERCE: dict[pa.DataType, Callable[[Any, str, Notes], Any]] = {
    pa.string(): as_str,
    pa.float64(): as_float,
    pa.int64(): as_int,
    pa.bool_(): as_bool,
}


def _clean(values: list[Any], type_: pa.DataType) -> bool:
    """No value of a fast-path column needs a note (NUL in text, NaN/Infinity in doubles).

    Checked on the Python values, in C loops: cheaper than Arrow kernels on slot-sized columns.
    A finite sum means every value is finite; an overflowing sum only sends the column to the
    value-by-value path, which gives the same result.
    """
    if type_ == pa.string():
        return "\x00" not in "".join(filter(None, values))
    if type_ == pa.float64():
        try:
            return math.isfinite(sum(filter(None, values)))
        except OverflowError:  # an int sum beyond a double
            return False
    return True


def typed_column(values: list[Any], type_: pa.DataType, path: str, issues: list[Notes], *, typed: bool = False) -> pa.Array:
    """``values`` as an Arrow array of ``type_``, coercing value by value only when needed.

    ``typed``: every value is null or of the column's JSON type, and no text holds a NUL nor any
    number is non-finite (``model_decoder``'s records): then the checks for the fast path are skipped.
    """
    if type_ == schemas.TS:
        return _timestamp_column(values, path, issues, typed=typed)
    if typed or (set(map(type, values)) <= _FAST_KINDS[type_] and _clean(values, type_)):
        try:
            return pa.array(values, type=type_)
        except (ValueError, TypeError, OverflowError):  # e.g. an int beyond 2**53 for a double
            pass
    coerce = _COERCE[type_]
    return pa.array([None if v is None else coerce(v, path, issues[i]) for i, v in enumerate(values)], type=type_)


# The common shape; for it Arrow's own parser gives the same instants as ``as_timestamp``. Checked by
# Arrow's RE2 (ASCII ``\d``, ``$`` only at the end of the text) over the whole column, ~8x faster than
# ``re`` value by value.
_PLAIN_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"


def _timestamp_column(values: list[Any], path: str, issues: list[Notes], *, typed: bool = False) -> pa.Array:
    if typed or set(map(type, values)) <= _FAST_KINDS[pa.string()]:
        try:
            text = pa.array(values, type=pa.string())
            if pc.all(pc.match_substring_regex(text, _PLAIN_ISO)).as_py() is not False:  # None: all null
                return pc.cast(text, schemas.TS)
        except (ValueError, TypeError, OverflowError):  # odd text: decide value by value
            pass
    return pa.array([None if v is None else as_timestamp(v, path, issues[i]) for i, v in enumerate(values)], type=schemas.TS)
