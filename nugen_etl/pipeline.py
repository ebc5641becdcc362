"""The one orchestration of nugen-etl: snapshot a slot (fetch -> archive -> flatten -> Parquet ->
warehouse) and replay the raw archive. The CLI and the Airflow tasks are thin adapters over these."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date, datetime, timedelta
from typing import Any

from .classify import Classified, classify_answer
from .config import AccountConfig, Config
from .fetch import ApiClient, RetryPolicy
from .flatten import Flattened, flatten_answers, flatten_models
from .load import SlotWriter
from .raw_archive import list_archived_slots, read_raw_answer, write_raw_answer
from .records import SUCCESS_OUTCOMES, AccountRun, Outcome, RawAnswer, SlotLoad
from .slots import day_bounds, utcnow
from .storage import Storage, open_storage
from .summary import RunSummary
from .warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

Progress = Callable[[AccountRun], None]
_UNREADABLE = (OSError, ValueError, KeyError, EOFError)  # what a damaged archived answer raises


def answer_to_load(raw: RawAnswer) -> SlotLoad:
    """Classify and flatten one answer into what the sinks receive (pure)."""
    classified = classify_answer(raw)
    if classified.outcome not in SUCCESS_OUTCOMES:
        return _unsuccessful_load(raw, classified)
    flat = flatten_models(classified.models or [], account_id=raw.account_id,
                          snapshot_at=raw.snapshot_at, fetched_at=raw.fetched_at)
    return _flattened_load(raw, classified, flat)


def _run_fields(raw: RawAnswer) -> dict[str, Any]:
    return dict(account_id=raw.account_id, snapshot_at=raw.snapshot_at, http_status=raw.http_status,
                attempts=raw.attempts, fetched_at=raw.fetched_at)


def _unsuccessful_load(raw: RawAnswer, classified: Classified) -> SlotLoad:
    return SlotLoad(AccountRun(outcome=classified.outcome, error=classified.error, **_run_fields(raw)))


def _flattened_load(raw: RawAnswer, classified: Classified, flat: Flattened) -> SlotLoad:
    run = AccountRun(outcome=classified.outcome, model_count=flat.snapshots.num_rows,
                     quarantined_count=flat.quarantine.num_rows, coerced_count=flat.coerced_count,
                     **_run_fields(raw))
    return SlotLoad(run, flat.tables())


def open_configured_warehouse(config: Config) -> Warehouse:
    password = config.warehouse.password.reveal() if config.warehouse.password else None
    return open_warehouse(config.warehouse.url, password=password)


def build_client(config: Config, base_url: str) -> ApiClient:
    api = config.api
    return ApiClient(base_url, timeout_s=api.timeout_s, max_concurrency=api.max_concurrency,
                     verify=api.verify_tls, max_body_bytes=api.max_body_bytes,
                     retry=RetryPolicy(max_attempts=api.max_attempts, deadline_s=api.deadline_s,
                                       base_delay_s=api.retry_base_delay_s))


def run_snapshot(config: Config, *, snapshot_at: datetime, accounts: Sequence[AccountConfig] | None = None,
                 warehouse: Warehouse | None = None, clients: dict[str, ApiClient] | None = None,
                 progress: Progress | None = None, skip_succeeded: bool = False,
                 storage: Storage | None = None) -> RunSummary:
    """Snapshot every given account (default: all configured) into the slot ``snapshot_at``.

    Accounts are fetched ``max_concurrency`` at a time and streamed through: each answer is archived
    raw, flattened, written to Parquet and loaded in warehouse batches. One account's failure
    never stops or rolls back another's. With ``skip_succeeded`` (a retry of the same slot),
    accounts already recorded ok/empty for the slot are not fetched again. ``storage`` defaults
    to the configured one (``open_storage``).
    """
    accounts = tuple(accounts if accounts is not None else config.accounts)
    storage = open_storage(config) if storage is None else storage
    summary = RunSummary(command="run", snapshot_at=snapshot_at)
    owned_clients = clients is None
    clients = {} if clients is None else clients
    with _warehouse_scope(config, warehouse) as wh, \
            SlotWriter(storage, wh, batch_size=config.warehouse.batch_accounts, summary=summary) as writer:
        if skip_succeeded:
            done = succeeded_accounts(wh, snapshot_at)
            summary.skipped = [a.id for a in accounts if a.id in done]
            accounts = tuple(a for a in accounts if a.id not in done)
        config.require_keys(accounts)
        try:
            for raws in _fetch_all(config, storage, accounts, snapshot_at, clients):
                for load in _loads_of(raws):
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
             storage: Storage | None = None) -> RunSummary:
    """Rebuild Parquet and warehouse rows of [first, last] (UTC days) from the raw archive. No API calls.

    Per slot the newest successful answer wins; a slot that only ever failed is replayed as failed.
    """
    start, end = day_bounds(first, last)
    summary = RunSummary(command="backfill", snapshot_at=None)
    storage = open_storage(config) if storage is None else storage
    with _warehouse_scope(config, warehouse) as wh, \
            SlotWriter(storage, wh, batch_size=config.warehouse.batch_accounts, summary=summary) as writer:
        archived = list_archived_slots(storage, start=start, end=end, account_ids=accounts or None)
        for load in _replay_all(storage, archived, summary):
            writer.add(load)
            if progress:
                progress(load.run)
    return summary.finish()


def replay_slot(config: Config, *, snapshot_at: datetime, accounts: Sequence[str] | None = None,
                warehouse: Warehouse | None = None, progress: Progress | None = None,
                storage: Storage | None = None) -> RunSummary:
    """Load one past slot from the raw archive without calling the API.

    An account with no archived answer for the slot is recorded ``not_observed``: the API only
    knows the present, so a past slot is never filled with today's state.
    """
    account_ids = list(accounts) if accounts is not None else [a.id for a in config.accounts]
    summary = RunSummary(command="replay", snapshot_at=snapshot_at)
    end = snapshot_at + timedelta(microseconds=1)
    storage = open_storage(config) if storage is None else storage
    with _warehouse_scope(config, warehouse) as wh, \
            SlotWriter(storage, wh, batch_size=config.warehouse.batch_accounts, summary=summary) as writer:
        archived = {a: keys for a, _, keys in list_archived_slots(
            storage, start=snapshot_at, end=end, account_ids=account_ids)}
        items = ((a, snapshot_at, archived.get(a)) for a in account_ids)
        for load in _replay_all(storage, items, summary):
            writer.add(load)
            if progress:
                progress(load.run)
    return summary.finish()


def succeeded_accounts(warehouse: Warehouse, snapshot_at: datetime) -> set[str]:
    """Accounts whose slot is already recorded ok/empty in the warehouse."""
    rows = warehouse.fetch_all("select account_id from nugen.account_runs where snapshot_at = ? "
                               "and outcome in ('ok', 'empty')", [snapshot_at])
    return {r[0] for r in rows}


def choose_replay(answers_newest_first: Iterable[RawAnswer]) -> SlotLoad:
    """The newest successful answer of a slot, else the newest answer (a failure never hides a success)."""
    newest: SlotLoad | None = None
    for raw in answers_newest_first:
        load = _load_or_failure(raw)
        if load.run.outcome in SUCCESS_OUTCOMES:
            return load
        newest = newest or load
    if newest is None:
        raise ValueError("no archived answer")
    return newest


def _replay_archived(storage: Storage, account_id: str, slot: datetime, keys: Sequence[str],
                     summary: RunSummary) -> SlotLoad | None:
    """The slot's replay from its archived answers (oldest first), or None (recorded) if unreadable."""
    try:
        return choose_replay(read_raw_answer(storage, k) for k in reversed(keys))
    except _UNREADABLE as exc:
        summary.record_error(account_id, f"unreadable raw archive for slot {slot.isoformat()}: {exc}")
        return None


REPLAY_GROUP = 48  # archived slots flattened per call in a replay (the per-call cost dominates small slots)

def _replay_all(storage: Storage, items: Iterable[tuple[str, datetime, Sequence[str] | None]],
                summary: RunSummary) -> Iterator[SlotLoad]:
    """The replay of each (account, slot, archived keys or None) in order, as ``_replay_archived``
    gives it slot by slot (None keys: ``not_observed``), but flattened ``REPLAY_GROUP`` slots at a time.

    Unreadable slots are recorded in ``summary`` (at their place in the order) and skipped.
    Anything unexpected in the batched path (a transform bug, a bad argument) sends the affected
    slots through ``_replay_archived``, so a failure still costs only its own slot.
    """
    group: list[tuple[str, datetime, Sequence[str] | None]] = []
    for item in items:
        group.append(item)
        if len(group) >= REPLAY_GROUP:
            yield from _replay_group(storage, group, summary)
            group = []
    if group:
        yield from _replay_group(storage, group, summary)


def _replay_group(storage: Storage, group: list[tuple[str, datetime, Sequence[str] | None]],
                  summary: RunSummary) -> Iterator[SlotLoad]:
    # Per item: a finished SlotLoad, an error message (unreadable), None (take the slot-by-slot
    # path) or the index of its answer in ``to_flatten``.
    outcomes: list[SlotLoad | str | int | None] = []
    to_flatten: list[tuple[RawAnswer, Classified]] = []
    for account_id, slot, keys in group:
        if keys is None:
            outcomes.append(SlotLoad(AccountRun(
                account_id=account_id, snapshot_at=slot, outcome=Outcome.NOT_OBSERVED, attempts=0,
                error="past slot with no archived answer; the API only knows the present")))
            continue
        try:
            picked = _pick_archived(storage, keys)
        except _UNREADABLE as exc:
            outcomes.append(f"unreadable raw archive for slot {slot.isoformat()}: {exc}")
            continue
        if picked is None or isinstance(picked, SlotLoad):
            outcomes.append(picked)
        else:
            outcomes.append(len(to_flatten))
            to_flatten.append(picked)
    flats: list[Flattened] | None = None
    if to_flatten:
        try:
            flats = flatten_answers([(c.models or [], raw.account_id, raw.snapshot_at, raw.fetched_at)
                                     for raw, c in to_flatten])
        except Exception:  # noqa: BLE001 - redone slot by slot, where a failure costs one slot
            flats = None
    for (account_id, slot, keys), outcome in zip(group, outcomes):
        if isinstance(outcome, SlotLoad):
            yield outcome
        elif isinstance(outcome, str):
            summary.record_error(account_id, outcome)
        elif outcome is not None and flats is not None:
            raw, classified = to_flatten[outcome]
            yield _flattened_load(raw, classified, flats[outcome])
        else:
            assert keys is not None
            load = _replay_archived(storage, account_id, slot, keys, summary)
            if load is not None:
                yield load


def _pick_archived(storage: Storage, keys: Sequence[str]) -> SlotLoad | tuple[RawAnswer, Classified] | None:
    """What ``choose_replay`` picks, before flattening: the newest answer that classifies as a
    success (to flatten), else the newest answer's failure load. Reads newest first and stops at
    the first success, as ``choose_replay`` does. Read errors propagate; None if classifying
    raised (then the slot-by-slot path decides)."""
    newest: SlotLoad | None = None
    for key in reversed(keys):
        raw = read_raw_answer(storage, key)
        try:
            classified = classify_answer(raw)
        except Exception:  # noqa: BLE001 - _load_or_failure turns it into this slot's failure
            return None
        if classified.outcome in SUCCESS_OUTCOMES:
            return raw, classified
        newest = newest or _unsuccessful_load(raw, classified)
    if newest is None:
        raise ValueError("no archived answer")
    return newest


def _loads_of(raws: Sequence[RawAnswer]) -> list[SlotLoad]:
    """``_load_or_failure`` of each answer, with the successful ones flattened in one call (the
    per-call cost dominates, and in a fan-out every Arrow call on the main thread also waits for
    the GIL behind the fetch threads). Anything unexpected: answer by answer."""
    if len(raws) == 1:
        return [_load_or_failure(raws[0])]
    try:
        classified = [classify_answer(raw) for raw in raws]
        ok = [i for i, c in enumerate(classified) if c.outcome in SUCCESS_OUTCOMES]
        flats = flatten_answers([(classified[i].models or [], raws[i].account_id, raws[i].snapshot_at,
                                  raws[i].fetched_at) for i in ok])
    except Exception:  # noqa: BLE001 - a transform bug must cost one account, not its batch-mates
        return [_load_or_failure(raw) for raw in raws]
    flat_of = dict(zip(ok, flats))
    return [_flattened_load(raw, c, flat_of[i]) if i in flat_of else _unsuccessful_load(raw, c)
            for i, (raw, c) in enumerate(zip(raws, classified))]


def _load_or_failure(raw: RawAnswer) -> SlotLoad:
    try:
        return answer_to_load(raw)
    except Exception as exc:  # a transform bug must cost one account, not the run
        log.exception("account %s: transform failed", raw.account_id)
        return SlotLoad(AccountRun(account_id=raw.account_id, snapshot_at=raw.snapshot_at,
                                   outcome=Outcome.FAILED, http_status=raw.http_status,
                                   attempts=raw.attempts, fetched_at=raw.fetched_at,
                                   error=f"transform failed: {type(exc).__name__}: {exc}"[:500]))


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


__all__ = ["answer_to_load", "backfill", "choose_replay", "open_configured_warehouse", "replay_slot",
           "run_snapshot", "succeeded_accounts"]
