"""Write each (account, slot) to Parquet and batch it into warehouse transactions."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from .errors import WarehouseBusy, WarehouseError, WarehouseUnavailable
from .parquet_sink import write_slot_parquet
from .records import SlotLoad
from .storage import Storage, as_storage
from .summary import RunSummary
from .warehouse import Warehouse

log = logging.getLogger(__name__)

PARQUET_WRITERS = 4  # threads writing slot files: encoding, write and fsync release the GIL


class SlotWriter:
    """Parquet first (atomic per file), then the warehouse in batches of ``batch_size`` accounts.

    A slot's Parquet files are written by a small thread pool while the caller goes on (the
    encoding, the write and the fsyncs release the GIL; on the calling thread they serialised
    a fan-out behind the disk). A batch goes to the warehouse only once every Parquet write of
    its slots has finished; a slot whose write failed is reported and left out of it, as before.
    A batch is one transaction; if it fails, its accounts are retried one by one so a bad
    account cannot take its batch-mates down with it. If the warehouse is unreachable, the batch's
    accounts fail together (their Parquet files and raw answers stay, for a backfill) and the
    next batch tries again.
    """

    def __init__(self, storage: Storage | Path, warehouse: Warehouse, *, batch_size: int, fsync: bool = True,
                 summary: RunSummary) -> None:
        self._storage, self._warehouse = as_storage(storage, fsync=fsync), warehouse
        self._batch_size, self._summary = batch_size, summary
        self._batch: list[tuple[SlotLoad, Future[object] | None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[str, datetime], Future[object]] = {}  # newest write per slot

    def add(self, load: SlotLoad) -> None:
        self._summary.record(load.run)
        future: Future[object] | None = None
        if load.tables is not None:
            key = (load.run.account_id, load.run.snapshot_at)
            earlier = self._pending.get(key)
            if earlier is not None:  # the same slot twice: its files are written in order
                earlier.exception()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=PARQUET_WRITERS, thread_name_prefix="nugen-parquet")
            future = self._pool.submit(write_slot_parquet, self._storage, load.tables,
                                       account_id=load.run.account_id, snapshot_at=load.run.snapshot_at)
            self._pending[key] = future
        self._batch.append((load, future))
        if len(self._batch) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        batch = self._written(self._batch)
        self._batch = []
        self._pending.clear()
        if not batch:
            return
        try:
            self._warehouse.load(batch)
            return
        except WarehouseBusy:
            raise
        except WarehouseUnavailable as exc:  # one by one, each account would only wait to reconnect
            self._fail_all(batch, exc)
            return
        except WarehouseError as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning("warehouse batch of %d accounts failed (%s); retrying one by one", len(batch), exc)
        for i, load in enumerate(batch):
            try:
                self._warehouse.load([load])
            except WarehouseBusy:
                raise
            except WarehouseUnavailable as exc:
                self._fail_all(batch[i:], exc)
                return
            except WarehouseError as exc:
                self._fail(load, exc)

    def _written(self, batch: list[tuple[SlotLoad, Future[object] | None]]) -> list[SlotLoad]:
        """The batch's loads whose Parquet files are written (waits for them); failures reported."""
        ready = []
        for load, future in batch:
            exc = future.exception() if future is not None else None
            if exc is None:
                ready.append(load)
            elif isinstance(exc, Exception):  # one slot's bad write must not stop the others
                log.error("account %s: parquet write failed: %s", load.run.account_id, exc)
                self._summary.record_error(load.run.account_id, f"parquet write failed: {exc}")
            else:
                raise exc
        return ready

    def _fail(self, load: SlotLoad, exc: Exception) -> None:
        log.error("account %s: warehouse load failed: %s", load.run.account_id, exc)
        self._summary.record_error(load.run.account_id, f"warehouse load failed: {exc}")

    def _fail_all(self, loads: list[SlotLoad], exc: WarehouseUnavailable) -> None:
        log.error("warehouse load of %d account(s) failed: %s (their raw answers are archived: "
                  "`nugen-etl backfill` loads them once the warehouse is back)", len(loads), exc)
        for load in loads:
            self._summary.record_error(load.run.account_id, f"warehouse load failed: {exc}")

    def close(self) -> None:
        """Wait for the Parquet writes still running (their slots are not loaded)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()
