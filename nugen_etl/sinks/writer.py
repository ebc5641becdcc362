"""Write batches of (account, slot) loads: one lake commit per table, then one warehouse transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from ..errors import WarehouseBusy, WarehouseError, WarehouseUnavailable
from ..records import SlotLoad, table_rows
from ..schemas import MODEL_SNAPSHOTS
from ..slots import utcnow
from ..summary import RunSummary
from ..warehouse import Warehouse
from .lake import Lake, LakeError
from .pending import LOADING, PendingJournal, PendingLoad

log = logging.getLogger(__name__)


class SlotWriter:
    """The lake first, then the warehouse, a batch at a time.

    A batch closes once it holds ``batch_size`` loads or ``max_rows`` model rows (it is written when
    the next load arrives, so the last batch is the one that leaving the ``with`` block writes, and
    its warehouse load compacts the tables: see ``Warehouse.load``), or when the caller calls
    :meth:`flush` (a backfill flushes at each day's end, so a day is one commit per table and one
    warehouse transaction). The batch is one Delta commit per table; if the lake refuses it
    (a conflict past the retries, storage down), the batch's accounts fail together and are not
    loaded, and their raw answers stay archived for a backfill. Then the batch is one warehouse
    transaction; if it fails, its accounts are retried one by one so a bad account cannot take its
    batch-mates down with it. If the warehouse is unreachable, the batch's accounts fail together
    and the next batch tries again.

    With a ``journal`` (a live run) the warehouse is never a gate: each batch's entry is written to
    the pending-load journal after its lake commit and before its warehouse load, and removed once the
    load commits. A load that does not commit (warehouse busy, unreachable, failing, or ``None``:
    ``unavailable`` says why) leaves the accounts recorded as pending, not failed, for the next run
    or ``nugen-etl load-pending`` to load from the raw archive.

    With ``overlap``, a batch's warehouse load runs in a background thread (DuckDB and psycopg
    release the GIL while they work): the caller writes batch N+1's lake commits and gathers the
    batch after it while batch N loads. Each batch still reaches the lake before the warehouse,
    batches load in order, one load is in flight and at most two batches are held (a third would
    cost PostgreSQL's run 1.58x the 10-account peak RSS at 2,000 accounts, past the 1.5x target). A
    ``WarehouseBusy`` (or any other exception) of a background load is raised by the next
    ``flush`` or on leaving the ``with`` block.
    """

    def __init__(
        self,
        lake: Lake,
        warehouse: Warehouse | None,
        *,
        batch_size: int | None,
        summary: RunSummary,
        max_rows: int | None = None,
        overlap: bool = False,
        journal: PendingJournal | None = None,
        unavailable: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._lake, self._warehouse = lake, warehouse
        self._journal, self._unavailable, self._clock = journal, unavailable, clock
        self._batch_size, self._max_rows, self._summary = batch_size, max_rows, summary
        self._batch: list[SlotLoad] = []
        self._rows = 0
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="nugen-warehouse") if overlap else None
        self._loaded: Future[None] | None = None  # the load in flight

    def add(self, load: SlotLoad) -> None:
        if self._full():  # closed when the next load comes, so the last batch is the one ``__exit__`` writes
            self.flush()
        self._summary.record(load.run)
        self._batch.append(load)
        if load.tables is not None:
            self._rows += table_rows(load.tables, MODEL_SNAPSHOTS.name)

    def _full(self) -> bool:
        return (self._batch_size is not None and len(self._batch) >= self._batch_size) or (
            self._max_rows is not None and self._rows >= self._max_rows
        )

    def flush(self, *, last: bool = False) -> None:
        """Write the batch gathered so far (``last``: the writer's last, whose warehouse load compacts
        what the others appended; see ``Warehouse.load``)."""
        batch, self._batch, self._rows = self._batch, [], 0
        if not batch or not self._write_lake(batch):
            return
        if self._loader is None:
            self._load(batch, last)
            return
        self._drain()  # one load in flight: the one before this batch's; raises what it raised
        self._loaded = self._loader.submit(self._load, batch, last)

    def _write_lake(self, batch: list[SlotLoad]) -> bool:
        try:
            self._lake.write(batch)
        except LakeError as exc:
            self._fail_all(batch, "lake write failed", exc)
            return False
        return True

    def _drain(self) -> None:
        """Wait for the load in flight; raise what it raised."""
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.result()

    def _load(self, batch: list[SlotLoad], last: bool) -> None:
        if self._journal is None:
            for account_id, message in self._load_batch(batch, last).items():
                self._summary.record_error(account_id, message)
            return
        entry = self._mark_pending(batch)
        not_loaded = self._load_batch(batch, last)
        try:
            if not not_loaded:
                if entry is not None:
                    self._journal.clear(entry.key)
                return
            outcomes = {load.run.account_id: str(load.run.outcome) for load in batch if load.run.account_id in not_loaded}
            reason = next(iter(not_loaded.values()))
            if entry is not None:
                self._journal.update(entry, outcomes, reason)
            else:
                self._journal.mark(batch[0].run.snapshot_at, outcomes, now=self._clock(), reason=reason)
        except OSError as exc:
            log.error("the pending-load journal could not be updated (%s)", exc)
        log.warning(
            "warehouse load of %d account(s) deferred: %s (archived and in the lake; the next run or `nugen-etl load-pending` loads them)",
            len(not_loaded),
            reason,
        )
        for account_id, message in not_loaded.items():
            self._summary.record_pending(account_id, message)

    def _mark_pending(self, batch: list[SlotLoad]) -> PendingLoad | None:
        """The batch's journal entry, written before its warehouse load (None if it cannot be written:
        the load goes ahead, only a crash before its commit would then go unrecorded)."""
        assert self._journal is not None
        slot, now = batch[0].run.snapshot_at, self._clock()
        outcomes = {load.run.account_id: str(load.run.outcome) for load in batch}
        try:
            key = self._journal.mark(slot, outcomes, now=now)
        except OSError as exc:
            log.error("the pending-load journal could not be written (%s); loading the batch anyway", exc)
            return None
        return PendingLoad(key=key, snapshot_at=slot, outcomes=outcomes, since=now, reason=LOADING)

    def _load_batch(self, batch: list[SlotLoad], last: bool) -> dict[str, str]:
        """Load the batch (then one by one if it fails); the accounts whose load did not commit, with why."""
        if self._warehouse is None:
            return {load.run.account_id: f"warehouse unavailable: {self._unavailable}" for load in batch}
        try:
            self._warehouse.load(batch, compact=last)
            return {}
        except WarehouseBusy as exc:
            if self._journal is None:
                raise
            return self._failed_all(batch, exc)
        except WarehouseUnavailable as exc:  # one by one, each account would only wait to reconnect
            return self._failed_all(batch, exc)
        except WarehouseError as exc:
            if len(batch) == 1:
                return self._failed(batch[0], exc)
            log.warning("warehouse batch of %d loads failed (%s); retrying one by one", len(batch), exc)
        failed: dict[str, str] = {}
        for i, load in enumerate(batch):
            try:
                self._warehouse.load([load], compact=last and i == len(batch) - 1)
            except WarehouseBusy as exc:
                if self._journal is None:
                    raise
                return {**failed, **self._failed_all(batch[i:], exc)}
            except WarehouseUnavailable as exc:
                return {**failed, **self._failed_all(batch[i:], exc)}
            except WarehouseError as exc:
                failed.update(self._failed(load, exc))
        return failed

    def _failed(self, load: SlotLoad, exc: Exception) -> dict[str, str]:
        log.error("account %s: warehouse load failed: %s", load.run.account_id, exc)
        return {load.run.account_id: f"warehouse load failed: {exc}"}

    def _failed_all(self, loads: list[SlotLoad], exc: Exception) -> dict[str, str]:
        accounts = sorted({load.run.account_id for load in loads})
        if self._journal is None:
            log.error(
                "warehouse load failed for %d account(s): %s (their raw answers are archived: "
                "`nugen-etl backfill` writes them once this is fixed)",
                len(accounts),
                exc,
            )
        return {account_id: f"warehouse load failed: {exc}" for account_id in accounts}

    def _fail_all(self, loads: list[SlotLoad], what: str, exc: Exception) -> None:
        accounts = sorted({load.run.account_id for load in loads})
        log.error(
            "%s for %d account(s): %s (their raw answers are archived: `nugen-etl backfill` writes them once this is fixed)",
            what,
            len(accounts),
            exc,
        )
        for account_id in accounts:
            self._summary.record_error(account_id, f"{what}: {exc}")

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.flush(last=True)
            if self._loader is not None:
                try:
                    self._drain()
                except Exception:
                    if exc_type is None:
                        raise
                    log.exception("a batch in flight failed while leaving on an earlier error")
        finally:
            if self._loader is not None:
                self._loader.shutdown(wait=True)
