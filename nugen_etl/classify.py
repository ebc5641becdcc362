"""Turn one raw answer into an outcome and the parsed model list (pure; shared by run and backfill)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .model_decoder import decode_models
from .records import Outcome, RawAnswer

NO_MODELS_DETAIL = "No aligned models found"


@dataclass(frozen=True)
class Classified:
    outcome: Outcome
    # the domain_aligned_models list when outcome is ok/empty: typed records (model_decoder) when the
    # body has the documented shape, else as json.loads gave it
    models: list[Any] | None = None
    error: str | None = None


def classify_answer(raw: RawAnswer) -> Classified:
    status = raw.http_status
    if status is None:
        return Classified(Outcome.FAILED, error=raw.error or "no HTTP answer")
    if status in (401, 403):
        return Classified(Outcome.AUTH_FAILED, error=f"HTTP {status}: the API key was rejected{_detail(raw.body)}")
    if status == 404:
        if _json_detail(raw.body) == NO_MODELS_DETAIL:
            return Classified(Outcome.EMPTY, models=[])
        return Classified(Outcome.FAILED, error=f"HTTP 404 that is not the 'no models' answer (wrong base_url?){_detail(raw.body)}")
    if status != 200:
        suffix = f" ({raw.error})" if raw.error else ""
        return Classified(Outcome.FAILED, error=f"HTTP {status}{_detail(raw.body)}{suffix}")
    if raw.error:
        return Classified(Outcome.FAILED, error=raw.error)
    decoded = decode_models(raw.body)  # the documented shape, typed; else the general path below
    if decoded is not None:
        return Classified(Outcome.OK if decoded else Outcome.EMPTY, models=decoded)
    try:
        doc = json.loads(raw.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return Classified(Outcome.FAILED, error=f"malformed JSON body ({len(raw.body)} bytes): {exc}")
    if not isinstance(doc, dict):
        return Classified(Outcome.FAILED, error=f"body is JSON {type(doc).__name__}, expected an object")
    models = doc.get("domain_aligned_models")
    if not isinstance(models, list):
        what = "missing" if "domain_aligned_models" not in doc else f"a {type(models).__name__}, not a list"
        return Classified(Outcome.FAILED, error=f"domain_aligned_models is {what}")
    return Classified(Outcome.OK if models else Outcome.EMPTY, models=models)


def _json_detail(body: bytes) -> Any:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc.get("detail") if isinstance(doc, dict) else None


def _detail(body: bytes) -> str:
    detail = _json_detail(body)
    if detail is None:
        return ""
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    return f": {text[:200]}"
