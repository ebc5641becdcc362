"""The warehouse interface: load batches of slot loads (staged by ``staging``, moved into ``nugen.*``
by the statements of ``load_sql``), reconnecting once when the connection is lost, plus the queries
the CLI and the report run. Each engine (``duckdb``, ``postgres``) decides how staging tables reach
its server and runs the same SQL."""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

from nugen_etl.errors import WarehouseError
from nugen_etl.records import SlotLoad
from nugen_etl.redaction import mask_url
from nugen_etl.warehouse import rollups
from nugen_etl.warehouse.rollups import Statement
from nugen_etl.warehouse.staging import StagedBatch, stage_batch

log = logging.getLogger(__name__)


class Warehouse(ABC):
    """A migrated set of ``nugen.*`` tables and views that accepts batches of slot loads.

    Use as a context manager, or call :meth:`close`. ``fetch_all`` takes ``?`` placeholders
    on every engine.
    """

    engine: str
    # Whether a live run loads this warehouse in a background thread while it writes the next batch's
    # lake commits (``SlotWriter(overlap=True)``): where the extra batch held stays within the memory
    # target (see the engines).
    live_loads_overlap: bool = False

    def __init__(self, url: str) -> None:
        self._display_url = mask_url(url)

    @property
    def url(self) -> str:
        """The URL this warehouse was opened with, password masked."""
        return self._display_url

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply the pending versioned migrations; return the versions applied (empty when current)."""

    def load(self, loads: Sequence[SlotLoad], *, compact: bool = True) -> None:
        """Write a batch of slot loads in one transaction: all of it or none of it.

        Per (account, slot) with tables: the slot's rows of model_snapshots, model_metrics (stored
        as model_metric_lists) and quarantined_records are replaced; evaluations are upserted (newest ``last_seen_at`` wins,
        first/last seen widen). Every load upserts its ``account_runs`` row, except that a failure
        never overwrites a recorded success. Raises ``WarehouseError`` naming the batch's accounts.

        If the connection is lost during the load (PostgreSQL restarted or ended the session; DuckDB
        invalidated the database after a fatal error), it is opened again and the batch loaded once
        more: a slot's load replaces the slot, so loading it twice is safe even when the lost
        commit did land. If it cannot be opened again, ``WarehouseUnavailable`` is raised and the
        next load tries again.

        ``compact=False`` lets the engine leave the storage of the tables it appends to for a later
        load to tidy (DuckDB: the commit's checkpoint skips merging partly filled row groups). A run
        passes it for every batch but its last, so each run leaves its tables compact and pays one
        merge instead of one per batch.
        """
        if not loads:
            return
        batch = stage_batch(loads)
        try:
            self._load_reconnecting(batch, compact)
        except WarehouseError:
            raise
        except Exception as exc:  # the driver's error, re-raised with the batch's context
            raise WarehouseError(
                f"{self.engine} warehouse refused the load of account(s) {', '.join(batch.account_ids)}: {type(exc).__name__}: {exc}"
            ) from exc

    def _load_reconnecting(self, batch: StagedBatch, compact: bool) -> None:
        try:
            self._load_staged(batch, compact)
        except Exception as exc:
            if not self._connection_lost(exc):
                raise
            log.warning(
                "%s warehouse %s lost its connection during the load of %d account(s) (%s: %s); reconnecting and loading the batch again",
                self.engine,
                self.url,
                len(batch.account_ids),
                type(exc).__name__,
                " ".join(str(exc).split()),
            )
            self._reconnect()
            self._load_staged(batch, compact)

    def rebuild_rollups(self) -> None:
        """Rebuild every rollup the BI views read from model_snapshots and account_runs, in one
        transaction (after rows reached those tables by other means than ``load``)."""
        try:
            self._run_in_transaction(rollups.rebuild_statements())
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(f"{self.engine} warehouse {self.url}: rebuilding the rollups failed: {type(exc).__name__}: {exc}") from exc

    def record_pending_loads(self, loads: Sequence[tuple[str, datetime, datetime, str]]) -> None:
        """Make ``nugen.pending_loads`` hold exactly ``loads`` (account_id, snapshot_at, since, reason),
        in one transaction (``account_health`` shows them)."""
        upsert = (
            "INSERT INTO nugen.pending_loads AS t (account_id, snapshot_at, since, reason) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, snapshot_at) DO UPDATE SET since = excluded.since, reason = excluded.reason"
        )
        try:
            self._run_in_transaction([("DELETE FROM nugen.pending_loads", ()), *[(upsert, load) for load in loads]])
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(
                f"{self.engine} warehouse {self.url}: recording the pending loads failed: {type(exc).__name__}: {exc}"
            ) from exc

    @abstractmethod
    def _run_in_transaction(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` (``?`` placeholders) in one transaction."""

    @contextmanager
    def loading_in_bulk(self) -> Iterator[None]:
        """A scope for many large loads in a row (a backfill): an engine may defer work that each
        load would otherwise repeat, as long as every committed load stays durable."""
        yield

    @abstractmethod
    def _load_staged(self, batch: StagedBatch, compact: bool) -> None: ...

    @abstractmethod
    def _connection_lost(self, exc: Exception) -> bool:
        """Whether ``exc`` means the connection is gone and only a new one can go on."""

    @abstractmethod
    def _reconnect(self) -> None:
        """Drop the lost connection and open a new one; ``WarehouseUnavailable`` if that fails."""

    @abstractmethod
    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query and return all rows as tuples.

        Placeholders are ``?`` on every engine (DuckDB's native style; the PostgreSQL engine
        rewrites them to ``%s`` outside quoted text, so PostgreSQL's own ``?`` JSON operators
        cannot be used in a query that has parameters). Timestamps come back in UTC.
        """

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for an advisory lock on ``parts``."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
