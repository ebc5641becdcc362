"""The one orchestration of nugen-etl: snapshot a slot (fetch -> archive -> flatten -> Delta lake ->
warehouse) and replay the raw archive. The CLI and the Airflow tasks are thin adapters over these."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date, datetime, timedelta
from typing import Any

from .config import AccountConfig, Config
from .errors import WarehouseError
from .fetch import ApiClient, RetryPolicy
from .records import SUCCESS_OUTCOMES, AccountRun, RawAnswer, as_utc
from .replay import Item, replay_days, replay_items
from .runtime import bulk_gc
from .sinks.archive import archived_accounts, list_archived_slots, write_raw_answer
from .sinks.compaction import CompactionReport, compact_lake
from .sinks.lake import Lake, open_lake
from .sinks.pending import PendingJournal, PendingLoad
from .sinks.upgrade import archived_days, move_legacy_tables
from .sinks.writer import SlotWriter
from .slots import day_bounds, utcnow
from .storage import AwsCredentials, LocalStorage, S3Storage, Storage
from .summary import RunSummary
from .transform import loads_of
from .warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

Progress = Callable[[AccountRun], None]
# A backfill commits a day at a time; a day larger than this many model rows is split so memory
# stays bounded (the 30-day benchmark's days hold ~48,000).
BACKFILL_MAX_ROWS = 250_000
# Answers of a live run flattened per call: enough that the call's fixed cost (~2 ms) is small beside
# the records' work, few enough that their decoded records stay a small part of the run's memory.
FLATTEN_GROUP = 25
# Processes that read and flatten a backfill's days while this one writes the lake and the warehouse.
REPLAY_WORKERS = min(2, os.cpu_count() or 1)


def run_lake(storage: Storage, command: str, run_id: str | None) -> Lake:
    """The lake for one command; its commits record the command, the run id and the version."""
    return open_lake(storage, metadata={"nugen.command": command, "nugen.run_id": run_id or f"{command}-{uuid.uuid4().hex[:12]}"})


def open_configured_storage(config: Config, *, credentials: AwsCredentials | None = None) -> Storage:
    """The configured storage: the local folder, or the S3 root with a client sized for the fetch pool."""
    if config.s3 is None:
        assert config.storage_root is not None
        return LocalStorage(config.storage_root, fsync=config.fsync)
    s3 = config.s3
    return S3Storage(
        s3.bucket,
        s3.prefix,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        credentials=credentials,
        max_connections=config.api.max_concurrency + 2,
    )


def open_configured_warehouse(config: Config) -> Warehouse:
    password = config.warehouse.password.reveal() if config.warehouse.password else None
    return open_warehouse(config.warehouse.url, password=password, duckdb_memory_limit=config.warehouse.duckdb_memory_limit)


def build_client(config: Config, base_url: str) -> ApiClient:
    api = config.api
    return ApiClient(
        base_url,
        timeout_s=api.timeout_s,
        max_concurrency=api.max_concurrency,
        verify=api.verify_tls,
        max_body_bytes=api.max_body_bytes,
        retry=RetryPolicy(max_attempts=api.max_attempts, deadline_s=api.deadline_s, base_delay_s=api.retry_base_delay_s),
    )


def run_snapshot(
    config: Config,
    *,
    snapshot_at: datetime,
    accounts: Sequence[AccountConfig] | None = None,
    warehouse: Warehouse | None = None,
    progress: Progress | None = None,
    skip_succeeded: bool = False,
    storage: Storage | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Snapshot every given account (default: all configured) into the slot ``snapshot_at``.

    Accounts are fetched ``max_concurrency`` at a time and streamed through: each answer is archived
    raw, flattened, and written in batches: one lake commit per table, then one warehouse
    transaction (in a background thread while the next batch's lake commits are written, where the
    warehouse allows it: ``Warehouse.live_loads_overlap``). One account's failure never stops or
    rolls back another's. With ``skip_succeeded`` (a retry of the same slot), accounts already
    recorded ok/empty for the slot are not fetched again. ``storage`` defaults to the configured
    one (``open_configured_storage``); ``run_id`` (e.g. Airflow's) goes into the lake's commit
    metadata.
    """
    accounts = tuple(accounts if accounts is not None else config.accounts)
    storage = open_configured_storage(config) if storage is None else storage
    summary = RunSummary(command="run", snapshot_at=snapshot_at)
    journal = PendingJournal(storage)
    clients: dict[str, ApiClient] = {}
    with run_lake(storage, "run", run_id) as lake, _deferrable_warehouse(config, warehouse) as (wh, why):
        if wh is not None:
            _catch_up(
                storage, wh, journal, summary, max_slots=config.warehouse.catch_up_slots, batch_accounts=config.warehouse.batch_accounts
            )
        with SlotWriter(
            lake,
            wh,
            batch_size=config.warehouse.batch_accounts,
            summary=summary,
            journal=journal,
            unavailable=why,
            overlap=wh is not None and wh.live_loads_overlap,
        ) as writer:
            if skip_succeeded:
                done = _archived_successes(journal, snapshot_at)
                if wh is not None:
                    done |= succeeded_accounts(wh, snapshot_at)
                summary.skipped = [a.id for a in accounts if a.id in done]
                accounts = tuple(a for a in accounts if a.id not in done)
            config.require_keys(accounts)
            try:
                fetched = _fetch_all(config, storage, accounts, snapshot_at, clients)
                for raws in _gathered(fetched, FLATTEN_GROUP):
                    for load in loads_of(raws):
                        writer.add(load)
                        if progress:
                            progress(load.run)
            finally:
                for client in clients.values():
                    client.close()
        if wh is not None:
            _show_pending(wh, journal)
    summary.backlog = _backlog(journal, config.warehouse.pending_alert_hours, now=utcnow())
    return summary.finish()


def load_pending(
    config: Config, *, warehouse: Warehouse | None = None, storage: Storage | None = None, max_slots: int | None = None
) -> RunSummary:
    """Load the slots of the pending-load journal from the raw archive into the warehouse (no API
    calls, no lake writes: the lake has them), oldest first, at most ``max_slots`` (None: all). A
    warehouse that still cannot be opened leaves the journal as it is (exit code 3)."""
    storage = open_configured_storage(config) if storage is None else storage
    summary = RunSummary(command="load-pending", snapshot_at=None)
    journal = PendingJournal(storage)
    with _deferrable_warehouse(config, warehouse) as (wh, _):
        if wh is not None:
            _catch_up(storage, wh, journal, summary, max_slots=max_slots, batch_accounts=config.warehouse.batch_accounts)
            _show_pending(wh, journal)
    summary.backlog = _backlog(journal, config.warehouse.pending_alert_hours, now=utcnow())
    return summary.finish()


def _catch_up(
    storage: Storage, warehouse: Warehouse, journal: PendingJournal, summary: RunSummary, *, max_slots: int | None, batch_accounts: int
) -> None:
    """Load the journal's oldest ``max_slots`` slots; stop at the first load that fails (the warehouse
    is in trouble: the rest waits for the next try). An account whose warehouse row already holds the
    archived answer it would load (a load that committed just before a crash) is not loaded again."""
    entries = _entries(journal)
    slots = sorted({e.snapshot_at for e in entries})
    chosen = set(slots if max_slots is None else slots[:max_slots])
    for entry in (e for e in entries if e.snapshot_at in chosen):
        slot, end = entry.snapshot_at, entry.snapshot_at + timedelta(microseconds=1)
        archived = {a: keys for a, _, keys in list_archived_slots(storage, start=slot, end=end, account_ids=entry.account_ids)}
        replay = RunSummary(command="load-pending", snapshot_at=slot)
        loads = list(replay_items(storage, [(a, slot, archived.get(a)) for a in entry.account_ids], replay))
        loaded = _loaded_runs(warehouse, slot, entry.account_ids)
        todo = [load for load in loads if loaded.get(load.run.account_id) != (str(load.run.outcome), load.run.fetched_at)]
        try:
            for start in range(0, len(todo), batch_accounts):
                warehouse.load(todo[start : start + batch_accounts])
        except WarehouseError as exc:
            log.warning("catch-up of slot %s stopped: %s", slot.isoformat(), exc)
            try:
                journal.update(entry, entry.outcomes, f"catch-up failed: {exc}")
            except OSError as error:
                log.error("the pending-load journal could not be updated (%s)", error)
            return
        try:
            journal.clear(entry.key)
        except OSError as exc:  # loaded: the next catch-up finds the rows in place and loads nothing
            log.error("the pending-load journal entry %s could not be removed (%s)", entry.key, exc)
        summary.caught_up += [f"{slot.isoformat()} {load.run.account_id}" for load in todo]
        for account_id, message in replay.errors.items():
            summary.record_error(account_id, message)
    if summary.caught_up:
        log.info("caught up %d pending warehouse load(s) from the raw archive", len(summary.caught_up))


def _entries(journal: PendingJournal) -> list[PendingLoad]:
    """The journal's entries but those of loads in flight (another run's, on the same storage root);
    none (logged) when the storage cannot list or read them: a storage root that is down fails its
    accounts' archive and lake writes, not the run."""
    try:
        now = utcnow()
        return [e for e in journal.entries() if not e.in_flight(now)]
    except OSError as exc:
        log.error("cannot read the pending-load journal: %s", exc)
        return []


def _show_pending(warehouse: Warehouse, journal: PendingJournal) -> None:
    """Copy the journal into ``nugen.pending_loads`` (what ``account_health`` shows); a warehouse that
    refuses it only leaves the table as it was."""
    loads: dict[tuple[str, datetime], tuple[str, datetime, datetime, str]] = {}
    for entry in _entries(journal):
        for account_id in entry.account_ids:
            known = loads.get((account_id, entry.snapshot_at))
            if known is None or entry.since < known[2]:
                loads[(account_id, entry.snapshot_at)] = (account_id, entry.snapshot_at, entry.since, entry.reason)
    try:
        warehouse.record_pending_loads(sorted(loads.values()))
    except WarehouseError as exc:
        log.warning("could not record the pending loads in the warehouse: %s", exc)


def _loaded_runs(warehouse: Warehouse, slot: datetime, account_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """(outcome, fetched_at) of the warehouse's account_runs rows of ``slot`` for ``account_ids``."""
    marks = ", ".join("?" for _ in account_ids)
    rows = warehouse.fetch_all(
        f"SELECT account_id, outcome, fetched_at FROM nugen.account_runs WHERE snapshot_at = ? AND account_id IN ({marks})",
        [slot, *account_ids],
    )
    return {a: (o, as_utc(f) if f is not None else None) for a, o, f in rows}


def _archived_successes(journal: PendingJournal, snapshot_at: datetime) -> set[str]:
    """Accounts the journal holds an archived ok/empty answer of ``snapshot_at`` for (their load is
    pending: a retry must not call the API for them again)."""
    success = {str(o) for o in SUCCESS_OUTCOMES}
    return {a for e in _entries(journal) if e.snapshot_at == snapshot_at for a, outcome in e.outcomes.items() if outcome in success}


def _backlog(journal: PendingJournal, alert_hours: float, *, now: datetime) -> list[dict[str, Any]]:
    """The journal's entries, each marked overdue once pending longer than ``alert_hours``."""
    backlog = []
    for entry in _entries(journal):
        overdue = (now - entry.since).total_seconds() > alert_hours * 3600
        backlog.append(
            {
                "snapshot_at": entry.snapshot_at.isoformat(),
                "accounts": entry.account_ids,
                "since": entry.since.isoformat(),
                "reason": entry.reason,
                "overdue": overdue,
            }
        )
        if overdue:
            log.error(
                "warehouse load of slot %s for %d account(s) pending since %s (%s): run `nugen-etl load-pending --config FILE`",
                entry.snapshot_at.isoformat(),
                len(entry.outcomes),
                entry.since.isoformat(),
                entry.reason,
            )
    return backlog


def backfill(
    config: Config,
    *,
    first: date,
    last: date,
    accounts: Sequence[str] | None = None,
    warehouse: Warehouse | None = None,
    progress: Progress | None = None,
    storage: Storage | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Rebuild lake and warehouse rows of [first, last] (UTC days) from the raw archive. No API calls.

    Per slot the newest successful answer wins; a slot that only ever failed is replayed as failed.
    Day by day: each day is one lake commit per table and one warehouse transaction (a day of more
    than ``BACKFILL_MAX_ROWS`` model rows is split).
    """
    day_bounds(first, last)  # refuses --to before --from
    summary = RunSummary(command="backfill", snapshot_at=None)
    storage = open_configured_storage(config) if storage is None else storage
    with (
        bulk_gc(),
        run_lake(storage, "backfill", run_id) as lake,
        _warehouse_scope(config, warehouse) as wh,
        wh.loading_in_bulk(),
        SlotWriter(lake, wh, batch_size=None, max_rows=BACKFILL_MAX_ROWS, summary=summary, overlap=True) as writer,
    ):
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


def replay_slot(
    config: Config,
    *,
    snapshot_at: datetime,
    accounts: Sequence[str] | None = None,
    warehouse: Warehouse | None = None,
    progress: Progress | None = None,
    storage: Storage | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Load one past slot from the raw archive without calling the API.

    An account with no archived answer for the slot is recorded ``not_observed``: the API only
    knows the present, so a past slot is never filled with today's state.
    """
    account_ids = list(accounts) if accounts is not None else [a.id for a in config.accounts]
    summary = RunSummary(command="replay", snapshot_at=snapshot_at)
    end = snapshot_at + timedelta(microseconds=1)
    storage = open_configured_storage(config) if storage is None else storage
    with (
        run_lake(storage, "replay", run_id) as lake,
        _warehouse_scope(config, warehouse) as wh,
        SlotWriter(lake, wh, batch_size=config.warehouse.batch_accounts, summary=summary) as writer,
    ):
        archived = {a: keys for a, _, keys in list_archived_slots(storage, start=snapshot_at, end=end, account_ids=account_ids)}
        items: list[Item] = [(a, snapshot_at, archived.get(a)) for a in account_ids]
        _replay_into(writer, storage, items, summary, progress)
    return summary.finish()


def compact(
    config: Config, *, day: date | None = None, storage: Storage | None = None, now: datetime | None = None, run_id: str | None = None
) -> CompactionReport:
    """Compact ``day``, or every closed day not compacted since it last changed; then vacuum with the
    configured retention. A day closes two slots after its end (the DAG's default lateness)."""
    storage = open_configured_storage(config) if storage is None else storage
    with run_lake(storage, "compact", run_id) as lake:
        return compact_lake(
            lake,
            storage,
            now=now or utcnow(),
            lateness=2 * config.granularity,
            retention_hours=config.vacuum_retention_hours,
            target_size=config.target_file_mb << 20,
            day=day,
        )


def upgrade_lake(
    config: Config, *, warehouse: Warehouse | None = None, storage: Storage | None = None, progress: Progress | None = None
) -> tuple[list[str], RunSummary | None]:
    """Move the old per-slot Parquet folders aside (nothing deleted) and rebuild the Delta tables from
    the whole raw archive. Returns the moved tables and the backfill's summary (None: empty archive)."""
    storage = open_configured_storage(config) if storage is None else storage
    moved = move_legacy_tables(storage)
    span = archived_days(storage)
    if span is None:
        return moved, None
    return moved, backfill(
        config,
        first=span[0],
        last=span[1],
        warehouse=warehouse,
        progress=progress,
        storage=storage,
        run_id=f"upgrade-lake-{uuid.uuid4().hex[:12]}",
    )


def _replay_into(writer: SlotWriter, storage: Storage, items: Iterable[Item], summary: RunSummary, progress: Progress | None) -> None:
    for load in replay_items(storage, items, summary):
        writer.add(load)
        if progress:
            progress(load.run)


def succeeded_accounts(warehouse: Warehouse, snapshot_at: datetime) -> set[str]:
    """Accounts whose slot is already recorded ok/empty in the warehouse."""
    rows = warehouse.fetch_all(
        "select account_id from nugen.account_runs where snapshot_at = ? and outcome in ('ok', 'empty')", [snapshot_at]
    )
    return {r[0] for r in rows}


def _fetch_all(
    config: Config, storage: Storage, accounts: Sequence[AccountConfig], snapshot_at: datetime, clients: dict[str, ApiClient]
) -> Iterator[list[RawAnswer]]:
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


def _gathered(groups: Iterable[list[RawAnswer]], size: int) -> Iterator[list[RawAnswer]]:
    """The answers in lists of at least ``size`` (the last may be shorter). Answers complete a few at a
    time, and flattening pays ~2 ms per call: flattened a batch at a time, a 50-model answer costs its
    records' work, not the call's."""
    gathered: list[RawAnswer] = []
    for group in groups:
        gathered += group
        if len(gathered) >= size:
            yield gathered
            gathered = []
    if gathered:
        yield gathered


def _fetch_and_archive(storage: Storage, client: ApiClient, account: AccountConfig, snapshot_at: datetime) -> RawAnswer:
    assert account.api_key is not None
    try:
        raw = client.fetch_account(account.id, account.api_key.reveal(), snapshot_at=snapshot_at)
    except Exception as exc:  # noqa: BLE001 - the client should not raise; if it does, it costs this account only
        log.error("account %s: fetch crashed: %s", account.id, type(exc).__name__)
        raw = RawAnswer(
            account_id=account.id,
            snapshot_at=snapshot_at,
            fetched_at=utcnow(),
            http_status=None,
            body=b"",
            attempts=0,
            error=f"fetch crashed: {type(exc).__name__}",
        )
    try:
        write_raw_answer(storage, raw)
    except OSError as exc:
        log.error("account %s: cannot archive the raw answer: %s", account.id, exc)
        return RawAnswer(
            account_id=account.id,
            snapshot_at=snapshot_at,
            fetched_at=raw.fetched_at,
            http_status=None,
            body=b"",
            attempts=raw.attempts,
            error=f"raw archive write failed: {exc}",
        )
    return raw


class _deferrable_warehouse:
    """The warehouse of a live run, or (None, why) when it cannot be opened: busy, unreachable or
    failing to migrate. The run then archives and writes the lake, and defers the loads."""

    def __init__(self, config: Config, warehouse: Warehouse | None) -> None:
        self._scope = _warehouse_scope(config, warehouse)
        self._open = False

    def __enter__(self) -> tuple[Warehouse | None, str]:
        try:
            warehouse = self._scope.__enter__()
        except WarehouseError as exc:
            log.warning("warehouse not available (%s): fetching, archiving and writing the lake; the warehouse loads are deferred", exc)
            return None, str(exc)
        self._open = True
        return warehouse, ""

    def __exit__(self, *exc: object) -> None:
        if self._open:
            self._scope.__exit__(*exc)


class _warehouse_scope:
    """Use the given warehouse, or open (and migrate, then close) the configured one."""

    def __init__(self, config: Config, warehouse: Warehouse | None) -> None:
        self._config, self._given = config, warehouse
        self._opened: Warehouse | None = None

    def __enter__(self) -> Warehouse:
        if self._given is not None:
            return self._given
        opened = self._opened = open_configured_warehouse(self._config)
        try:
            opened.migrate()
        except BaseException:
            opened.close()
            raise
        return opened

    def __exit__(self, *exc: object) -> None:
        if self._opened is not None:
            self._opened.close()


__all__ = [
    "backfill",
    "compact",
    "load_pending",
    "open_configured_storage",
    "open_configured_warehouse",
    "replay_slot",
    "run_lake",
    "run_snapshot",
    "succeeded_accounts",
    "upgrade_lake",
]
