"""Process-wide settings. The edges apply them (the CLI, the Airflow tasks, the benchmark's processes);
the pipeline itself never changes process state."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_allocator_for_arrow() -> None:
    """Let Arrow allocate with the C library's malloc unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses a pool.

    pyarrow's default pool (mimalloc) keeps freed pages in per-thread heaps, and the pipeline builds
    Arrow tables on one thread and writes them on others: on the memory benchmark that held ~50 MiB
    more at the peak of a 2,000-account run, at the same speed (docs/performance-history.md).
    """
    if not os.environ.get(ARROW_POOL_ENV):
        pa.set_memory_pool(pa.system_memory_pool())


# Allocations between automatic young collections while bulk work runs (CPython's default is 700).
BULK_GC_THRESHOLD = 100_000
_bulk_depth = 0  # bulk_gc scopes open in this process


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Fewer cyclic-GC passes while a bulk job (a backfill, a replay worker's unit) builds and drops many
    short-lived containers: the objects alive on entry are frozen out of the collector's scans and a
    young collection runs every ``BULK_GC_THRESHOLD`` allocations instead of 700; the settings are
    restored and one full collection runs on the way out (of the outermost scope, when nested).
    Reference counting still frees everything that is not in a cycle at once, so memory stays
    bounded. (A 6-day rebuild spent ~8 % of the replay workers' and ~6 % of the main process's CPU
    in collections.)"""
    global _bulk_depth
    if _bulk_depth:
        _bulk_depth += 1
        try:
            yield
        finally:
            _bulk_depth -= 1
        return
    _bulk_depth = 1
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(BULK_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        _bulk_depth = 0
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        gc.collect()
