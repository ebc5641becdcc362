"""The one orchestration of nugen-etl: snapshot a slot (fetch -> archive -> flatten -> Delta lake ->
warehouse) and replay the raw archive. The CLI and the Airflow tasks are thin adapters over these."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date, datetime, timedelta

from .compaction import CompactionReport, compact_lake
from .config import AccountConfig, Config
from .fetch import ApiClient, RetryPolicy
from .lake import Lake, open_lake
from .load import SlotWriter
from .raw_archive import archived_accounts, list_archived_slots, write_raw_answer
from .records import AccountRun, RawAnswer
from .replay import Item, choose_replay, replay_days, replay_items
from .runtime import use_system_allocator_for_arrow
from .slots import day_bounds, utcnow
from .storage import Storage, open_storage
from .summary import RunSummary
from .transform import answer_to_load, loads_of
from .upgrade import archived_days, move_legacy_tables
from .warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

Progress = Callable[[AccountRun], None]
# A backfill commits a day at a time; a day larger than this many model rows is split so memory
# stays bounded (the 30-day benchmark's days hold ~48,000).
BACKFILL_MAX_ROWS = 250_000
# Processes that read and flatten a backfill's days while this one writes the lake and the warehouse.
REPLAY_WORKERS = min(2, os.cpu_count() or 1)


def run_lake(storage: Storage, command: str, run_id: str | None) -> Lake:
    """The lake for one command; its commits record the command, the run id and the version."""
    return open_lake(storage, metadata={"nugen.command": command,
                                        "nugen.run_id": run_id or f"{command}-{uuid.uuid4().hex[:12]}"})


def open_configured_warehouse(config: Config) -> Warehouse:
    password = config.warehouse.password.reveal() if config.warehouse.password else None
    return open_warehouse(config.warehouse.url, password=password,
                          duckdb_memory_limit=config.warehouse.duckdb_memory_limit)


def build_client(config: Config, base_url: str) -> ApiClient:
    api = config.api
    return ApiClient(base_url, timeout_s=api.timeout_s, max_concurrency=api.max_concurrency,
                     verify=api.verify_tls, max_body_bytes=api.max_body_bytes,
                     retry=RetryPolicy(max_attempts=api.max_attempts, deadline_s=api.deadline_s,
                                       base_delay_s=api.retry_base_delay_s))


def run_snapshot(config: Config, *, snapshot_at: datetime, accounts: Sequence[AccountConfig] | None = None,
                 warehouse: Warehouse | None = None, clients: dict[str, ApiClient] | None = None,
                 progress: Progress | None = None, skip_succeeded: bool = False,
                 storage: Storage | None = None, run_id: str | None = None) -> RunSummary:
    """Snapshot every given account (default: all configured) into the slot ``snapshot_at``.

    Accounts are fetched ``max_concurrency`` at a time and streamed through: each answer is archived
    raw, flattened, and written in batches: one lake commit per table, then one warehouse
    transaction. One account's failure never stops or rolls back another's. With ``skip_succeeded``
    (a retry of the same slot), accounts already recorded ok/empty for the slot are not fetched
    again. ``storage`` defaults to the configured one (``open_storage``); ``run_id`` (e.g.
    Airflow's) goes into the lake's commit metadata.
    """
    use_system_allocator_for_arrow()
    accounts = tuple(accounts if accounts is not None else config.accounts)
    storage = open_storage(config) if storage is None else storage
    summary = RunSummary(command="run", snapshot_at=snapshot_at)
    owned_clients = clients is None
    clients = {} if clients is None else clients
    with run_lake(storage, "run", run_id) as lake, _warehouse_scope(config, warehouse) as wh, \
            SlotWriter(lake, wh, batch_size=config.warehouse.batch_accounts, summary=summary) as writer:
        if skip_succeeded:
            done = succeeded_accounts(wh, snapshot_at)
            summary.skipped = [a.id for a in accounts if a.id in done]
            accounts = tuple(a for a in accounts if a.id not in done)
        config.require_keys(accounts)
        try:
            for raws in _fetch_all(config, storage, accounts, snapshot_at, clients):
                for load in loads_of(raws):
                    writer.add(load)
                    if progress:
                        progress(load.run)
        finally:
            if owned_clients:
                for client in clients.values():
                    client.close()
    return summary.finish()


def backfill(config: Config, *, first: date, last: date, accounts: Sequence[str] | None = None,
             warehouse: Warehouse | None = None, progress: Progress | None = None,
             storage: Storage | None = None, run_id: str | None = None) -> RunSummary:
    """Rebuild lake and warehouse rows of [first, last] (UTC days) from the raw archive. No API calls.

    Per slot the newest successful answer wins; a slot that only ever failed is replayed as failed.
    Day by day: each day is one lake commit per table and one warehouse transaction (a day of more
    than ``BACKFILL_MAX_ROWS`` model rows is split).
    """
    use_system_allocator_for_arrow()
    day_bounds(first, last)  # refuses --to before --from
    summary = RunSummary(command="backfill", snapshot_at=None)
    storage = open_storage(config) if storage is None else storage
    with run_lake(storage, "backfill", run_id) as lake, _warehouse_scope(config, warehouse) as wh, \
            wh.loading_in_bulk(), \
            SlotWriter(lake, wh, batch_size=None, max_rows=BACKFILL_MAX_ROWS, summary=summary,
                       overlap=True) as writer:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        account_ids = list(accounts) if accounts else archived_accounts(storage)
        day: date | None = None
        for unit in replay_days(storage, days, account_ids, workers=REPLAY_WORKERS):
            if unit.day != day:
                writer.flush()  # a day is one lake commit per table and one warehouse transaction
                day = unit.day
            for account_id, message in unit.errors:
                summary.record_error(account_id, message)
            for load in unit.loads():
                writer.add(load)
                if progress:
                    progress(load.run)
    return summary.finish()


def replay_slot(config: Config, *, snapshot_at: datetime, accounts: Sequence[str] | None = None,
                warehouse: Warehouse | None = None, progress: Progress | None = None,
                storage: Storage | None = None, run_id: str | None = None) -> RunSummary:
    """Load one past slot from the raw archive without calling the API.

    An account with no archived answer for the slot is recorded ``not_observed``: the API only
    knows the present, so a past slot is never filled with today's state.
    """
    use_system_allocator_for_arrow()
    account_ids = list(accounts) if accounts is not None else [a.id for a in config.accounts]
    summary = RunSummary(command="replay", snapshot_at=snapshot_at)
    end = snapshot_at + timedelta(microseconds=1)
    storage = open_storage(config) if storage is None else storage
    with run_lake(storage, "replay", run_id) as lake, _warehouse_scope(config, warehouse) as wh, \
            SlotWriter(lake, wh, batch_size=config.warehouse.batch_accounts, summary=summary) as writer:
        archived = {a: keys for a, _, keys in list_archived_slots(
            storage, start=snapshot_at, end=end, account_ids=account_ids)}
        items: list[Item] = [(a, snapshot_at, archived.get(a)) for a in account_ids]
        _replay_into(writer, storage, items, summary, progress)
    return summary.finish()


def compact(config: Config, *, day: date | None = None, storage: Storage | None = None,
            now: datetime | None = None, run_id: str | None = None) -> CompactionReport:
    """Compact ``day``, or every closed day not compacted since it last changed; then vacuum with the
    configured retention. A day closes two slots after its end (the DAG's default lateness)."""
    storage = open_storage(config) if storage is None else storage
    with run_lake(storage, "compact", run_id) as lake:
        return compact_lake(lake, storage, now=now or utcnow(), lateness=2 * config.granularity,
                            retention_hours=config.vacuum_retention_hours,
                            target_size=config.target_file_mb << 20, day=day)


def upgrade_lake(config: Config, *, warehouse: Warehouse | None = None, storage: Storage | None = None,
                 progress: Progress | None = None) -> tuple[list[str], RunSummary | None]:
    """Move the old per-slot Parquet folders aside (nothing deleted) and rebuild the Delta tables from
    the whole raw archive. Returns the moved tables and the backfill's summary (None: empty archive)."""
    storage = open_storage(config) if storage is None else storage
    moved = move_legacy_tables(storage)
    span = archived_days(storage)
    if span is None:
        return moved, None
    return moved, backfill(config, first=span[0], last=span[1], warehouse=warehouse, progress=progress,
                           storage=storage, run_id=f"upgrade-lake-{uuid.uuid4().hex[:12]}")


def _replay_into(writer: SlotWriter, storage: Storage, items: Iterable[Item], summary: RunSummary,
                 progress: Progress | None) -> None:
    for load in replay_items(storage, items, summary):
        writer.add(load)
        if progress:
            progress(load.run)


def succeeded_accounts(warehouse: Warehouse, snapshot_at: datetime) -> set[str]:
    """Accounts whose slot is already recorded ok/empty in the warehouse."""
    rows = warehouse.fetch_all("select account_id from nugen.account_runs where snapshot_at = ? "
                               "and outcome in ('ok', 'empty')", [snapshot_at])
    return {r[0] for r in rows}


def _fetch_all(config: Config, storage: Storage, accounts: Sequence[AccountConfig], snapshot_at: datetime,
               clients: dict[str, ApiClient]) -> Iterator[list[RawAnswer]]:
    """Fetch and archive accounts concurrently; yields the answers that completed together, as they
    complete (bounded in flight)."""
    limit = config.api.max_concurrency
    for account in accounts:
        base_url = account.base_url or config.api.base_url
        if base_url not in clients:
            clients[base_url] = build_client(config, base_url)
    pending: set[Future[RawAnswer]] = set()
    queue = iter(accounts)
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="nugen-fetch") as pool:
        while True:
            for account in queue:
                client = clients[account.base_url or config.api.base_url]
                pending.add(pool.submit(_fetch_and_archive, storage, client, account, snapshot_at))
                if len(pending) >= 2 * limit:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield [future.result() for future in done]


def _fetch_and_archive(storage: Storage, client: ApiClient, account: AccountConfig,
                       snapshot_at: datetime) -> RawAnswer:
    assert account.api_key is not None
    try:
        raw = client.fetch_account(account.id, account.api_key.reveal(), snapshot_at=snapshot_at)
    except Exception as exc:  # the client should not raise; if it does, it costs this account only
        log.error("account %s: fetch crashed: %s", account.id, type(exc).__name__)
        raw = RawAnswer(account_id=account.id, snapshot_at=snapshot_at, fetched_at=utcnow(),
                        http_status=None, body=b"", attempts=0, error=f"fetch crashed: {type(exc).__name__}")
    try:
        write_raw_answer(storage, raw)
    except OSError as exc:
        log.error("account %s: cannot archive the raw answer: %s", account.id, exc)
        return RawAnswer(account_id=account.id, snapshot_at=snapshot_at, fetched_at=raw.fetched_at,
                         http_status=None, body=b"", attempts=raw.attempts,
                         error=f"raw archive write failed: {exc}")
    return raw


class _warehouse_scope:
    """Use the given warehouse, or open (and migrate, then close) the configured one."""

    def __init__(self, config: Config, warehouse: Warehouse | None) -> None:
        self._config, self._given, self._opened = config, warehouse, None

    def __enter__(self) -> Warehouse:
        if self._given is not None:
            return self._given
        self._opened = open_configured_warehouse(self._config)
        try:
            self._opened.migrate()
        except BaseException:
            self._opened.close()
            raise
        return self._opened

    def __exit__(self, *exc: object) -> None:
        if self._opened is not None:
            self._opened.close()


__all__ = ["answer_to_load", "backfill", "choose_replay", "compact", "open_configured_warehouse", "replay_slot",
           "run_snapshot", "succeeded_accounts", "upgrade_lake"]
