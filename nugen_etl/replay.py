"""Replaying the raw archive: per (account, slot) the newest successful archived answer, else the
newest failure, turned into a SlotLoad without calling the API.

Archived slots are flattened ``REPLAY_GROUP`` at a time (the per-call cost dominates small slots);
a failure in a group is redone slot by slot, so it still costs only its own slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from .classify import Classified, classify_answer
from .flatten import Flattened, flatten_answers
from .raw_archive import read_raw_answer
from .records import SUCCESS_OUTCOMES, AccountRun, Outcome, RawAnswer, SlotLoad
from .storage import Storage
from .summary import RunSummary
from .transform import flattened_load, load_or_failure, unsuccessful_load

UNREADABLE = (OSError, ValueError, KeyError, EOFError)  # what a damaged archived answer raises
Item = tuple[str, datetime, Sequence[str] | None]  # (account, slot, archived keys oldest first, or None)


def choose_replay(answers_newest_first: Iterable[RawAnswer]) -> SlotLoad:
    """The newest successful answer of a slot, else the newest answer (a failure never hides a success)."""
    newest: SlotLoad | None = None
    for raw in answers_newest_first:
        load = load_or_failure(raw)
        if load.run.outcome in SUCCESS_OUTCOMES:
            return load
        newest = newest or load
    if newest is None:
        raise ValueError("no archived answer")
    return newest


def replay_archived(storage: Storage, account_id: str, slot: datetime, keys: Sequence[str],
                    summary: RunSummary) -> SlotLoad | None:
    """The slot's replay from its archived answers (oldest first), or None (recorded) if unreadable."""
    try:
        return choose_replay(read_raw_answer(storage, k) for k in reversed(keys))
    except UNREADABLE as exc:
        summary.record_error(account_id, f"unreadable raw archive for slot {slot.isoformat()}: {exc}")
        return None


REPLAY_GROUP = 48  # archived slots flattened per call in a replay (the per-call cost dominates small slots)


def replay_items(storage: Storage, items: Iterable[Item], summary: RunSummary) -> Iterator[SlotLoad]:
    """The replay of each (account, slot, archived keys or None) in order, as ``replay_archived``
    gives it slot by slot (None keys: ``not_observed``), but flattened ``REPLAY_GROUP`` slots at a time.

    Unreadable slots are recorded in ``summary`` (at their place in the order) and skipped.
    Anything unexpected in the batched path (a transform bug, a bad argument) sends the affected
    slots through ``replay_archived``, so a failure still costs only its own slot.
    """
    group: list[Item] = []
    for item in items:
        group.append(item)
        if len(group) >= REPLAY_GROUP:
            yield from _replay_group(storage, group, summary)
            group = []
    if group:
        yield from _replay_group(storage, group, summary)


def _replay_group(storage: Storage, group: list[Item], summary: RunSummary) -> Iterator[SlotLoad]:
    # Per item: a finished SlotLoad, an error message (unreadable), None (take the slot-by-slot
    # path) or the index of its answer in ``to_flatten``.
    outcomes: list[SlotLoad | str | int | None] = []
    to_flatten: list[tuple[RawAnswer, Classified]] = []
    for account_id, slot, keys in group:
        if keys is None:
            outcomes.append(SlotLoad(AccountRun(
                account_id=account_id, snapshot_at=slot, outcome=Outcome.NOT_OBSERVED, attempts=0,
                error="past slot with no archived answer; the API only knows the present")))
            continue
        try:
            picked = _pick_archived(storage, keys)
        except UNREADABLE as exc:
            outcomes.append(f"unreadable raw archive for slot {slot.isoformat()}: {exc}")
            continue
        if picked is None or isinstance(picked, SlotLoad):
            outcomes.append(picked)
        else:
            outcomes.append(len(to_flatten))
            to_flatten.append(picked)
    flats: list[Flattened] | None = None
    if to_flatten:
        try:
            flats = flatten_answers([(c.models or [], raw.account_id, raw.snapshot_at, raw.fetched_at)
                                     for raw, c in to_flatten])
        except Exception:  # noqa: BLE001 - redone slot by slot, where a failure costs one slot
            flats = None
    for (account_id, slot, keys), outcome in zip(group, outcomes):
        if isinstance(outcome, SlotLoad):
            yield outcome
        elif isinstance(outcome, str):
            summary.record_error(account_id, outcome)
        elif outcome is not None and flats is not None:
            raw, classified = to_flatten[outcome]
            yield flattened_load(raw, classified, flats[outcome])
        else:
            assert keys is not None
            load = replay_archived(storage, account_id, slot, keys, summary)
            if load is not None:
                yield load


def _pick_archived(storage: Storage, keys: Sequence[str]) -> SlotLoad | tuple[RawAnswer, Classified] | None:
    """What ``choose_replay`` picks, before flattening: the newest answer that classifies as a
    success (to flatten), else the newest answer's failure load. Reads newest first and stops at
    the first success, as ``choose_replay`` does. Read errors propagate; None if classifying
    raised (then the slot-by-slot path decides)."""
    newest: SlotLoad | None = None
    for key in reversed(keys):
        raw = read_raw_answer(storage, key)
        try:
            classified = classify_answer(raw)
        except Exception:  # noqa: BLE001 - load_or_failure turns it into this slot's failure
            return None
        if classified.outcome in SUCCESS_OUTCOMES:
            return raw, classified
        newest = newest or unsuccessful_load(raw, classified)
    if newest is None:
        raise ValueError("no archived answer")
    return newest

