"""The entry points (the CLI here) let Arrow allocate with the C library's malloc, unless the user chose a
pool with ARROW_DEFAULT_MEMORY_POOL (each case in a fresh interpreter: the pool is process-wide); the
pipeline itself leaves the process's pool alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .programs import program


@pytest.mark.parametrize("chosen", [None, "mimalloc"])
def test_entry_points_use_the_system_allocator_unless_a_pool_is_chosen(tmp_path: Path, chosen: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    out = (
        subprocess.run(
            [sys.executable, program("allocator_entry_points"), str(tmp_path)], env=env, capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
        .split()
    )
    if chosen:
        assert out == [chosen, chosen, chosen]
    else:  # pyarrow's own default is not malloc; the pipeline keeps it, the CLI switches
        assert out[0] != "system" and out[1] == out[0] and out[2] == "system"


def test_bulk_gc_raises_the_threshold_nests_and_restores() -> None:
    import gc

    from nugen_etl.runtime import BULK_GC_THRESHOLD, bulk_gc

    before = gc.get_threshold()
    with bulk_gc():
        assert gc.get_threshold()[0] == BULK_GC_THRESHOLD and gc.get_freeze_count() > 0
        with bulk_gc():  # a replay in the backfill's own process
            pass
        assert gc.get_threshold()[0] == BULK_GC_THRESHOLD and gc.get_freeze_count() > 0
        cycle: list = []
        cycle.append(cycle)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    with pytest.raises(ValueError):
        with bulk_gc():
            raise ValueError("an error inside still restores")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
