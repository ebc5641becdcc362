"""A synthetic raw archive for the rebuild scenario, written straight to disk (no HTTP).

Each (account, hourly slot) gets the simulator's exact 200 body for that hour, archived with
``raw_archive.write_raw_answer`` as a real run would have. Generated once per size into the cache
(it is deterministic) by a process pool, and reused.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path

from bench.common import FETCH_OFFSET, SEED, T0
from nugen_etl.records import RawAnswer
from nugen_etl.simulator import SimulatorState
from nugen_etl.sinks.archive import write_raw_answer


def archive_dir(cache: Path, days: int, accounts: int, models: int) -> Path:
    return cache / f"raw-archive-s{SEED}-d{days}-a{accounts}-m{models}"


def ensure_archive(cache: Path, days: int, accounts: int, models: int) -> Path:
    """The archive's root folder (holding ``raw/``), generated unless already complete."""
    root = archive_dir(cache, days, accounts, models)
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "raw").mkdir(parents=True)
    ids = SimulatorState(SEED, accounts + 1, models=models, start=T0).account_ids[:accounts]
    # spawned, not forked: an earlier scenario may have started delta-rs' runtime in this process
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_account, [(str(root), a, days, accounts, models) for a in ids]))
    (root / ".complete").touch()
    return root


def _write_account(args: tuple[str, str, int, int, int]) -> None:
    root, account_id, days, accounts, models = args
    state = SimulatorState(SEED, accounts + 1, models=models, start=T0)
    for hour in range(24 * days):
        slot = T0 + timedelta(hours=hour)
        fetched = slot + FETCH_OFFSET
        body = state.body_at(account_id, fetched)
        write_raw_answer(
            Path(root),
            RawAnswer(
                account_id=account_id,
                snapshot_at=slot,
                fetched_at=fetched,
                http_status=200,
                body=body,
                headers={"content-type": "application/json"},
            ),
            fsync=False,
        )
