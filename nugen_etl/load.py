"""Write batches of (account, slot) loads: one lake commit per table, then one warehouse transaction."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from .errors import WarehouseBusy, WarehouseError, WarehouseUnavailable
from .lake import Lake, LakeError
from .records import SlotLoad, table_rows
from .schemas import MODEL_SNAPSHOTS
from .summary import RunSummary
from .warehouse import Warehouse

log = logging.getLogger(__name__)


class SlotWriter:
    """The lake first, then the warehouse, a batch at a time.

    A batch closes after ``batch_size`` loads, after ``max_rows`` model rows, or when the caller
    calls :meth:`flush` (a backfill flushes at each day's end, so a day is one commit per table and
    one warehouse transaction). The batch is one Delta commit per table; if the lake refuses it
    (a conflict past the retries, storage down), the batch's accounts fail together and are not
    loaded, and their raw answers stay archived for a backfill. Then the batch is one warehouse
    transaction; if it fails, its accounts are retried one by one so a bad account cannot take its
    batch-mates down with it. If the warehouse is unreachable, the batch's accounts fail together
    and the next batch tries again.

    With ``overlap``, a closed batch is written by two threads (the lake's commits and the
    warehouse's load release the GIL): batch N+1's lake commits run while batch N loads into the
    warehouse, and the caller prepares batch N+2. Each batch still reaches the lake before the
    warehouse, batches load in order, and at most three are held. A ``WarehouseBusy`` (or any
    other exception) of a background batch is raised by the next ``flush`` or on leaving the
    ``with`` block.
    """

    def __init__(self, lake: Lake, warehouse: Warehouse, *, batch_size: int | None, summary: RunSummary,
                 max_rows: int | None = None, overlap: bool = False) -> None:
        self._lake, self._warehouse = lake, warehouse
        self._batch_size, self._max_rows, self._summary = batch_size, max_rows, summary
        self._batch: list[SlotLoad] = []
        self._rows = 0
        self._threads = (ThreadPoolExecutor(1, thread_name_prefix="nugen-lake"),
                         ThreadPoolExecutor(1, thread_name_prefix="nugen-warehouse")) if overlap else None
        self._lake_done: Future[None] | None = None
        self._loaded: Future[None] | None = None

    def add(self, load: SlotLoad) -> None:
        self._summary.record(load.run)
        self._batch.append(load)
        if load.tables is not None:
            self._rows += table_rows(load.tables, MODEL_SNAPSHOTS.name)
        if ((self._batch_size is not None and len(self._batch) >= self._batch_size)
                or (self._max_rows is not None and self._rows >= self._max_rows)):
            self.flush()

    def flush(self) -> None:
        batch, self._batch, self._rows = self._batch, [], 0
        if self._threads is None:
            if batch and self._write_lake(batch):
                self._load(batch)
            return
        if self._lake_done is not None:
            self._lake_done.result()  # one batch in the lake stage at a time; raises what it raised
            self._lake_done = None
        if batch:
            self._lake_done = self._threads[0].submit(self._lake_then_queue, batch)

    def _write_lake(self, batch: list[SlotLoad]) -> bool:
        try:
            self._lake.write(batch)
        except LakeError as exc:
            self._fail_all(batch, "lake write failed", exc)
            return False
        return True

    def _lake_then_queue(self, batch: list[SlotLoad]) -> None:
        """In the lake thread: commit the batch, then hand it to the warehouse thread once the batch
        before it has loaded (raising what that load raised)."""
        if not self._write_lake(batch):
            return
        assert self._threads is not None
        if self._loaded is not None:
            self._loaded.result()
        self._loaded = self._threads[1].submit(self._load, batch)

    def _drain(self) -> None:
        """Wait for the batches in flight; raise the first exception one of them raised."""
        first: BaseException | None = None
        for stage in ("_lake_done", "_loaded"):  # the lake thread sets _loaded before its future ends
            future = getattr(self, stage)
            setattr(self, stage, None)
            if future is None:
                continue
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after both stages ended
                first = first or exc
        if first is not None:
            raise first

    def _load(self, batch: list[SlotLoad]) -> None:
        try:
            self._warehouse.load(batch)
            return
        except WarehouseBusy:
            raise
        except WarehouseUnavailable as exc:  # one by one, each account would only wait to reconnect
            self._fail_all(batch, "warehouse load failed", exc)
            return
        except WarehouseError as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning("warehouse batch of %d loads failed (%s); retrying one by one", len(batch), exc)
        for i, load in enumerate(batch):
            try:
                self._warehouse.load([load])
            except WarehouseBusy:
                raise
            except WarehouseUnavailable as exc:
                self._fail_all(batch[i:], "warehouse load failed", exc)
                return
            except WarehouseError as exc:
                self._fail(load, exc)

    def _fail(self, load: SlotLoad, exc: Exception) -> None:
        log.error("account %s: warehouse load failed: %s", load.run.account_id, exc)
        self._summary.record_error(load.run.account_id, f"warehouse load failed: {exc}")

    def _fail_all(self, loads: list[SlotLoad], what: str, exc: Exception) -> None:
        accounts = sorted({load.run.account_id for load in loads})
        log.error("%s for %d account(s): %s (their raw answers are archived: `nugen-etl backfill` "
                  "writes them once this is fixed)", what, len(accounts), exc)
        for account_id in accounts:
            self._summary.record_error(account_id, f"{what}: {exc}")

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.flush()
            if self._threads is not None:
                try:
                    self._drain()
                except Exception:
                    if exc_type is None:
                        raise
                    log.exception("a batch in flight failed while leaving on an earlier error")
        finally:
            if self._threads is not None:
                for pool in self._threads:
                    pool.shutdown(wait=True)
