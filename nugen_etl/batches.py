"""Work done on a whole batch at once, redone item by item where the batch fails.

Flattening many answers in one call is several times cheaper than one at a time, but a bug that one
answer triggers must cost that answer only, never its batch-mates. ``whole_or_each`` is that rule,
written once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def whole_or_each(items: Sequence[T], whole: Callable[[Sequence[T]], Sequence[R]], each: Callable[[T], R], *, what: str) -> list[R]:
    """``whole(items)`` (one result per item, in order); if it raises, or gives another number of
    results, ``each(item)`` for every item instead. A single item goes to ``each`` directly.

    ``each`` decides what one item's failure becomes (a failed run, a slow path); ``what`` names
    the work in the log line that says the batch was redone.
    """
    if len(items) > 1:
        try:
            results = list(whole(items))
        except Exception as exc:  # noqa: BLE001 - redone item by item below, where a failure costs one item
            log.warning("%s of %d items failed as a batch (%s); redoing it item by item", what, len(items), type(exc).__name__)
        else:
            if len(results) == len(items):
                return results
            log.error("%s of %d items gave %d results; redoing it item by item", what, len(items), len(results))
    return [each(item) for item in items]
