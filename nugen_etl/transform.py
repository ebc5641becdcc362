"""Answer -> SlotLoad: classify and flatten archived or fetched answers into what the sinks receive.

Pure apart from logging. A transform failure costs its own answer only (a ``failed`` AccountRun),
never its batch-mates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .batches import whole_or_each
from .classify import Classified, classify_answer
from .flatten import Flattened, flatten_answers, flatten_models
from .records import SUCCESS_OUTCOMES, AccountRun, Outcome, RawAnswer, SlotLoad, table_rows
from .schemas import MODEL_SNAPSHOTS, QUARANTINE

log = logging.getLogger(__name__)


def answer_to_load(raw: RawAnswer) -> SlotLoad:
    """Classify and flatten one answer into what the sinks receive (pure)."""
    classified = classify_answer(raw)
    if classified.outcome not in SUCCESS_OUTCOMES:
        return unsuccessful_load(raw, classified)
    flat = flatten_models(classified.models or [], account_id=raw.account_id, snapshot_at=raw.snapshot_at, fetched_at=raw.fetched_at)
    return flattened_load(raw, classified, flat)


def _run_fields(raw: RawAnswer) -> dict[str, Any]:
    return dict(
        account_id=raw.account_id,
        snapshot_at=raw.snapshot_at,
        http_status=raw.http_status,
        attempts=raw.attempts,
        fetched_at=raw.fetched_at,
    )


def unsuccessful_load(raw: RawAnswer, classified: Classified) -> SlotLoad:
    return SlotLoad(AccountRun(outcome=classified.outcome, error=classified.error, **_run_fields(raw)))


def flattened_load(raw: RawAnswer, classified: Classified, flat: Flattened) -> SlotLoad:
    tables = flat.tables()
    run = AccountRun(
        outcome=classified.outcome,
        model_count=table_rows(tables, MODEL_SNAPSHOTS.name),
        quarantined_count=table_rows(tables, QUARANTINE.name),
        coerced_count=flat.coerced_count,
        **_run_fields(raw),
    )
    return SlotLoad(run, tables)


def loads_of(raws: Sequence[RawAnswer]) -> list[SlotLoad]:
    """``load_or_failure`` of each answer, with the successful ones flattened in one call (the
    per-call cost dominates, and in a fan-out every Arrow call on the main thread also waits for
    the GIL behind the fetch threads). Anything unexpected: answer by answer."""
    return whole_or_each(raws, _loads_together, load_or_failure, what="flattening")


def _loads_together(raws: Sequence[RawAnswer]) -> list[SlotLoad]:
    classified = [classify_answer(raw) for raw in raws]
    ok = [i for i, c in enumerate(classified) if c.outcome in SUCCESS_OUTCOMES]
    flats = flatten_answers([(classified[i].models or [], raws[i].account_id, raws[i].snapshot_at, raws[i].fetched_at) for i in ok])
    flat_of = dict(zip(ok, flats, strict=True))
    return [
        flattened_load(raw, c, flat_of[i]) if i in flat_of else unsuccessful_load(raw, c)
        for i, (raw, c) in enumerate(zip(raws, classified, strict=True))
    ]


def load_or_failure(raw: RawAnswer) -> SlotLoad:
    """``answer_to_load(raw)``, or this account's ``failed`` run if the transform raised."""
    try:
        return answer_to_load(raw)
    except Exception as exc:  # a transform bug must cost one account, not the run
        log.exception("account %s: transform failed", raw.account_id)
        return SlotLoad(
            AccountRun(
                account_id=raw.account_id,
                snapshot_at=raw.snapshot_at,
                outcome=Outcome.FAILED,
                http_status=raw.http_status,
                attempts=raw.attempts,
                fetched_at=raw.fetched_at,
                error=f"transform failed: {type(exc).__name__}: {exc}"[:500],
            )
        )
