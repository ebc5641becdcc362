"""The documented shape of an answer, decoded straight into typed records (msgspec).

Most answers hold exactly the documented fields with the documented JSON types. For those, a typed
decode is ~4x faster than ``json.loads`` and hands ``flatten`` records whose fields it reads by
attribute, so it can build whole columns at once. Anything else -- an unknown key, a value of
another JSON type, a record that is not an object, NaN, an escaped NUL or unpaired surrogate, a
body ``json.loads`` reads differently -- makes ``decode_models`` return None, and the caller takes
the general path (``json.loads`` and ``flatten``'s value-by-value rules). Both paths give the same
tables, byte for byte; that is what lets this one exist.

In ``evaluation_data``, ``UNSET`` marks a key that was absent, as opposed to present with ``null``:
the evaluation_data_json column keeps that difference, so those records keep it too.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, Struct, UnsetType

Number = int | float | None | UnsetType


class PerformanceMetrics(Struct, forbid_unknown_fields=True, gc=False):
    accuracy: int | float | None = None
    uncertainty: int | float | None = None
    average_response_time: int | float | None = None
    accuracy_before: int | float | None = None
    accuracy_after: int | float | None = None
    uncertainty_before: int | float | None = None
    uncertainty_after: int | float | None = None
    domain_violations: int | None = None
    domain_violations_before: int | None = None
    domain_violations_after: int | None = None


class EvaluationMetrics(Struct, forbid_unknown_fields=True, gc=False):
    accuracy: Number = UNSET
    uncertainty: Number = UNSET
    domain_violations: int | None | UnsetType = UNSET
    overall_score: Number = UNSET


class EvaluationData(Struct, forbid_unknown_fields=True, gc=False):
    evaluation_id: str | None | UnsetType = UNSET
    status: str | None | UnsetType = UNSET
    method: str | None | UnsetType = UNSET
    created_at: str | None | UnsetType = UNSET
    completed_at: str | None | UnsetType = UNSET
    raw_answers_count: int | None | UnsetType = UNSET
    total_questions: int | None | UnsetType = UNSET
    accuracy: Number = UNSET
    metrics: EvaluationMetrics | None | UnsetType = UNSET


class ModelRecord(Struct, forbid_unknown_fields=True, gc=False):
    id: str
    alignment_id: str | None = None
    name: str | None = None
    base_model: str | None = None
    alignment_project: str | None = None
    created_date: str | None = None
    status: str | None = None
    deployment_status: str | None = None
    endpoint: str | None = None
    creator: str | None = None
    usage_count: int | None = None
    last_used: str | None = None
    performance_metrics: PerformanceMetrics | None = None
    downloadable: bool | None = None
    evaluation_data: EvaluationData | None = None
    conversation_saving_enabled: bool | None = None


class _Body(Struct, gc=False):
    domain_aligned_models: list[ModelRecord]


class DecodedModels(list[ModelRecord]):
    """An answer's ``domain_aligned_models`` as typed records, with the body they came from (for the
    general path, should a check over the whole batch send the answer there after all)."""

    __slots__ = ("body",)

    def __init__(self, records: list[ModelRecord], body: bytes) -> None:
        super().__init__(records)
        self.body = body


_DECODER = msgspec.json.Decoder(_Body)
_JSON_TEXT = msgspec.json.Encoder(order="sorted")
# What json.loads reads into text that the warehouse cannot hold as is (flatten replaces and reports
# it value by value): an escaped NUL. (Unpaired surrogate escapes msgspec refuses by itself.)
_GENERAL_PATH_MARKERS = (b"\\u0000",)


def decode_models(body: bytes) -> DecodedModels | None:
    """The body's model list as typed records, or None when it needs the general path."""
    # A body without a backslash has no escapes at all (one memchr pass, ~60x cheaper than the search).
    if b"\\" in body and any(marker in body for marker in _GENERAL_PATH_MARKERS):
        return None
    try:
        return DecodedModels(_DECODER.decode(body).domain_aligned_models, body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def evaluation_json(values: list[EvaluationData | None]) -> list[bytes | None]:
    """Compact, key-sorted JSON of each decoded evaluation_data as UTF-8 (None stays None), as
    ``coercion.to_json`` writes its dict, provided every float in them is 0 or has a magnitude in [1e-4, 1e16) (outside
    that range msgspec writes exponents differently from Python's repr; the caller checks)."""
    encode = _JSON_TEXT.encode
    return [None if value is None else encode(value) for value in values]
