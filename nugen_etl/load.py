"""Write batches of (account, slot) loads: one lake commit per table, then one warehouse transaction."""

from __future__ import annotations

import logging

from .errors import WarehouseBusy, WarehouseError, WarehouseUnavailable
from .lake import Lake, LakeError
from .records import SlotLoad
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
    """

    def __init__(self, lake: Lake, warehouse: Warehouse, *, batch_size: int | None, summary: RunSummary,
                 max_rows: int | None = None) -> None:
        self._lake, self._warehouse = lake, warehouse
        self._batch_size, self._max_rows, self._summary = batch_size, max_rows, summary
        self._batch: list[SlotLoad] = []
        self._rows = 0

    def add(self, load: SlotLoad) -> None:
        self._summary.record(load.run)
        self._batch.append(load)
        if load.tables is not None and MODEL_SNAPSHOTS.name in load.tables:
            self._rows += load.tables[MODEL_SNAPSHOTS.name].num_rows
        if ((self._batch_size is not None and len(self._batch) >= self._batch_size)
                or (self._max_rows is not None and self._rows >= self._max_rows)):
            self.flush()

    def flush(self) -> None:
        batch, self._batch, self._rows = self._batch, [], 0
        if not batch:
            return
        try:
            self._lake.write(batch)
        except LakeError as exc:
            self._fail_all(batch, "lake write failed", exc)
            return
        self._load(batch)

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
        if exc_type is None:
            self.flush()
