"""Write each (account, slot) to Parquet and batch it into warehouse transactions."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import WarehouseBusy, WarehouseError
from .parquet_sink import write_slot_parquet
from .records import SlotLoad
from .storage import Storage, as_storage
from .summary import RunSummary
from .warehouse import Warehouse

log = logging.getLogger(__name__)


class SlotWriter:
    """Parquet first (atomic per file), then the warehouse in batches of ``batch_size`` accounts.

    A batch is one transaction; if it fails, its accounts are retried one by one so a bad
    account cannot take its batch-mates down with it.
    """

    def __init__(self, storage: Storage | Path, warehouse: Warehouse, *, batch_size: int, fsync: bool = True,
                 summary: RunSummary) -> None:
        self._storage, self._warehouse = as_storage(storage, fsync=fsync), warehouse
        self._batch_size, self._summary = batch_size, summary
        self._batch: list[SlotLoad] = []

    def add(self, load: SlotLoad) -> None:
        self._summary.record(load.run)
        if load.tables is not None:
            try:
                write_slot_parquet(self._storage, load.tables, account_id=load.run.account_id,
                                   snapshot_at=load.run.snapshot_at)
            except OSError as exc:
                self._summary.record_error(load.run.account_id, f"parquet write failed: {exc}")
                return
        self._batch.append(load)
        if len(self._batch) >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self._warehouse.load(batch)
            return
        except WarehouseBusy:
            raise
        except WarehouseError as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning("warehouse batch of %d accounts failed (%s); retrying one by one", len(batch), exc)
        for load in batch:
            try:
                self._warehouse.load([load])
            except WarehouseBusy:
                raise
            except WarehouseError as exc:
                self._fail(load, exc)

    def _fail(self, load: SlotLoad, exc: Exception) -> None:
        log.error("account %s: warehouse load failed: %s", load.run.account_id, exc)
        self._summary.record_error(load.run.account_id, f"warehouse load failed: {exc}")

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.flush()
