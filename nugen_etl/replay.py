"""Replaying the raw archive: per (account, slot) the newest successful archived answer, else the
newest failure, turned into a SlotLoad without calling the API.

Archived slots are flattened ``REPLAY_GROUP`` at a time (the per-call cost dominates small slots);
a failure in a group is redone slot by slot, so it still costs only its own slot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
import time as time_module
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pyarrow as pa

from .batches import whole_or_each
from .classify import Classified, classify_answer
from .flatten import Flattened, flatten_answers
from .records import SUCCESS_OUTCOMES, AccountRun, Outcome, PackedTables, RawAnswer, SlotLoad, gather, table_rows
from .runtime import bulk_gc
from .sinks.archive import read_raw_answer
from .storage import Storage
from .summary import RunSummary
from .transform import flattened_load, load_or_failure, unsuccessful_load

log = logging.getLogger(__name__)

UNREADABLE = (OSError, ValueError, KeyError, EOFError)  # what a damaged archived answer raises
Item = tuple[str, datetime, Sequence[str] | None]  # (account, slot, archived keys oldest first, or None)


def choose_replay(answers_newest_first: Iterable[RawAnswer]) -> SlotLoad:
    """The newest successful answer of a slot, else the newest answer (a failure never hides a success)."""
    newest: SlotLoad | None = None
    for raw in answers_newest_first:
        load = load_or_failure(raw)
        if load.run.outcome in SUCCESS_OUTCOMES:
            return load
        newest = newest or load
    if newest is None:
        raise ValueError("no archived answer")
    return newest


def replay_archived(storage: Storage, account_id: str, slot: datetime, keys: Sequence[str], summary: RunSummary) -> SlotLoad | None:
    """The slot's replay from its archived answers (oldest first), or None (recorded) if unreadable."""
    try:
        return choose_replay(read_raw_answer(storage, k) for k in reversed(keys))
    except UNREADABLE as exc:
        summary.record_error(account_id, f"unreadable raw archive for slot {slot.isoformat()}: {exc}")
        return None


REPLAY_GROUP = 240  # archived slots flattened per call in a replay (the per-call cost dominates small slots)


def replay_items(storage: Storage, items: Iterable[Item], summary: RunSummary) -> Iterator[SlotLoad]:
    """The replay of each (account, slot, archived keys or None) in order, as ``replay_archived``
    gives it slot by slot (None keys: ``not_observed``), but flattened ``REPLAY_GROUP`` slots at a time.

    Unreadable slots are recorded in ``summary`` (at their place in the order) and skipped.
    Anything unexpected in the batched path (a transform bug, a bad argument) sends the affected
    slots through ``replay_archived``, so a failure still costs only its own slot.
    """
    group: list[Item] = []
    for item in items:
        group.append(item)
        if len(group) >= REPLAY_GROUP:
            yield from _replay_group(storage, group, summary)
            group = []
    if group:
        yield from _replay_group(storage, group, summary)


def _replay_group(storage: Storage, group: list[Item], summary: RunSummary) -> Iterator[SlotLoad]:
    # Per item: a finished SlotLoad, an error message (unreadable), None (take the slot-by-slot
    # path) or the index of its answer in ``to_flatten``.
    outcomes: list[SlotLoad | str | int | None] = []
    to_flatten: list[tuple[RawAnswer, Classified]] = []
    for account_id, slot, keys in group:
        if keys is None:
            outcomes.append(
                SlotLoad(
                    AccountRun(
                        account_id=account_id,
                        snapshot_at=slot,
                        outcome=Outcome.NOT_OBSERVED,
                        attempts=0,
                        error="past slot with no archived answer; the API only knows the present",
                    )
                )
            )
            continue
        try:
            picked = _pick_archived(storage, keys)
        except UNREADABLE as exc:
            outcomes.append(f"unreadable raw archive for slot {slot.isoformat()}: {exc}")
            continue
        if picked is None or isinstance(picked, SlotLoad):
            outcomes.append(picked)
        else:
            outcomes.append(len(to_flatten))
            to_flatten.append(picked)
    flats = whole_or_each(to_flatten, _flatten_together, _flatten_alone, what="replay flattening")
    for (account_id, slot, keys), outcome in zip(group, outcomes, strict=False):
        if isinstance(outcome, SlotLoad):
            yield outcome
        elif isinstance(outcome, str):
            summary.record_error(account_id, outcome)
        elif outcome is not None and (flat := flats[outcome]) is not None:
            raw, classified = to_flatten[outcome]
            yield flattened_load(raw, classified, flat)
        else:
            assert keys is not None
            load = replay_archived(storage, account_id, slot, keys, summary)
            if load is not None:
                yield load


def _flatten_together(picked: Sequence[tuple[RawAnswer, Classified]]) -> list[Flattened | None]:
    return list(flatten_answers([(c.models or [], raw.account_id, raw.snapshot_at, raw.fetched_at) for raw, c in picked]))


def _flatten_alone(picked: tuple[RawAnswer, Classified]) -> Flattened | None:
    """One slot's flattening, or None if it raised: ``replay_archived`` then turns it into the slot's failure."""
    try:
        return _flatten_together([picked])[0]
    except Exception:  # noqa: BLE001 - the slot-by-slot path records this slot's failure
        return None


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
        except Exception:  # noqa: BLE001 - load_or_failure turns it into this slot's failure
            return None
        if classified.outcome in SUCCESS_OUTCOMES:
            return raw, classified
        newest = newest or unsuccessful_load(raw, classified)
    if newest is None:
        raise ValueError("no archived answer")
    return newest


# --- replaying whole days, in worker processes ------------------------------------------------------

REPLAY_ACCOUNTS_PER_UNIT = 50  # accounts of one day replayed per unit of work: bounds a unit's memory


@dataclass(frozen=True)
class ReplayedUnit:
    """The replay of some accounts' archived slots of one UTC day, packed to cross a process boundary:
    each table's rows of every slot in one contiguous table, and where each slot's rows start.

    (A slot's tables are slices of the group flattened with it: a unit is spooled to Arrow IPC files,
    which write slices as they are, or ``compacted`` before it is pickled.)
    """

    day: date
    runs: list[AccountRun]
    tables: dict[str, pa.Table]  # table name -> the rows of every data-bearing slot
    offsets: dict[str, list[int]] | None  # table name -> row offsets; None: the unit has no data
    has_data: list[bool]  # per run: whether its load carries tables
    errors: list[tuple[str, str]]  # (account, message) of unreadable archived answers
    spooled: dict[str, str] | None = None  # table name -> Arrow IPC file holding it (see spool)

    def spool(self, folder: str) -> ReplayedUnit:
        """This unit with its tables written to Arrow IPC files in ``folder`` instead of held: what a
        replay worker returns, so the tables cross to the backfill as files it maps (no pickling,
        no pipe; the pickled tables cost the backfill's main process ~0.3 s a day to receive)."""
        import pyarrow.ipc as ipc

        paths = {}
        try:
            for name, table in self.tables.items():
                paths[name] = path = os.path.join(folder, f"{uuid.uuid4().hex}-{name}.arrow")
                with pa.OSFile(path, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
        except BaseException:
            for path in paths.values():
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        return dataclasses.replace(self, tables={}, spooled=paths)

    def unspooled(self) -> ReplayedUnit:
        """This unit with its spooled tables mapped back into memory (zero-copy) and their files removed
        (a mapping outlives its file's name)."""
        import pyarrow.ipc as ipc

        if self.spooled is None:
            return self
        tables = {}
        try:
            for name, path in self.spooled.items():
                with pa.memory_map(path) as source:
                    tables[name] = ipc.open_file(source).read_all()
        finally:
            for path in self.spooled.values():
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return dataclasses.replace(self, tables=tables, spooled=None)

    @classmethod
    def pack(cls, day: date, loads: Sequence[SlotLoad], errors: list[tuple[str, str]]) -> ReplayedUnit:
        data = [ld.tables for ld in loads if ld.tables is not None]
        names = sorted({name for tables in data for name in tables})
        tables, offsets = {}, {}
        for name in names:  # slots flattened together arrive as one slice each (records.gather)
            offsets[name] = [0, *itertools.accumulate(table_rows(tables_, name) for tables_ in data)]
            tables[name] = pa.concat_tables(gather(data, name))  # a chunk per flatten call, not copied
        return cls(day, [ld.run for ld in loads], tables, offsets if data else None, [ld.tables is not None for ld in loads], errors)

    def compacted(self) -> ReplayedUnit:
        """This unit with each table in one chunk: what goes through a pipe (a pickled slice would carry
        the whole buffers it was cut from)."""
        return dataclasses.replace(self, tables={name: table.combine_chunks() for name, table in self.tables.items()})

    def loads(self) -> list[SlotLoad]:
        """The unit's slot loads; their tables are slices of the unit's, which a batch of them takes whole."""
        packed = PackedTables(self.tables, self.offsets) if self.offsets is not None else None
        out, k = [], 0
        for run, has in zip(self.runs, self.has_data, strict=False):
            if not has:
                out.append(SlotLoad(run))
                continue
            assert packed is not None
            out.append(SlotLoad(run, packed.slot(k)))
            k += 1
        return out


def replay_unit(storage: Storage, day: date, account_ids: Sequence[str]) -> ReplayedUnit:
    """Every archived slot of ``account_ids`` on ``day``, replayed (runs in a worker process too)."""
    from .sinks.archive import list_archived_slots

    start = datetime.combine(day, time(), UTC)
    summary = RunSummary(command="backfill", snapshot_at=None)
    items = list_archived_slots(storage, start=start, end=start + timedelta(days=1), account_ids=account_ids)
    loads = list(replay_items(storage, items, summary))
    return ReplayedUnit.pack(day, loads, sorted(summary.errors.items()))


def replay_days(storage: Storage, days: Sequence[date], account_ids: Sequence[str], *, workers: int) -> Iterator[ReplayedUnit]:
    """``replay_unit`` over every day and group of ``REPLAY_ACCOUNTS_PER_UNIT`` accounts, in day order.

    With ``workers`` > 1 the units are replayed by that many ``spawn`` processes (reading, parsing
    and flattening hold the GIL; a forked child would also inherit the parent's delta-rs runtime,
    which does not survive ``fork()``), at most ``workers + 1`` units ahead of the caller, so memory
    stays bounded while the caller writes. A storage that cannot be sent to a process (an S3
    client) is replayed in this process.
    """
    units = [
        (day, list(account_ids[i : i + REPLAY_ACCOUNTS_PER_UNIT]))
        for day in days
        for i in range(0, len(account_ids), REPLAY_ACCOUNTS_PER_UNIT)
    ]
    if workers <= 1 or len(units) <= workers or not _sendable(storage):
        for day, accounts in units:
            yield replay_unit(storage, day, accounts)
        return
    done = 0
    folder = _spool_folder()
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            pending: deque[Future[ReplayedUnit]] = deque()
            queue = iter(units)
            for day, accounts in itertools.islice(queue, workers + 1):
                pending.append(pool.submit(_replay_unit_spooled, storage, day, accounts, folder))
            while pending:
                day, accounts = units[done]
                unit = pending.popleft().result()
                try:
                    unit = unit.unspooled()
                except OSError as exc:  # its files went missing (a temp cleaner): replay it here instead
                    log.warning("a spooled replay unit could not be read (%s); replaying it in this process", exc)
                    unit = replay_unit(storage, day, accounts)
                for day, accounts in itertools.islice(queue, 1):
                    pending.append(pool.submit(_replay_unit_spooled, storage, day, accounts, folder))
                done += 1
                yield unit
    except BrokenProcessPool as exc:  # e.g. a script without a __main__ guard: spawn cannot start it
        log.warning("replay workers failed (%s); replaying the remaining %d unit(s) in this process", exc, len(units) - done)
        for day, accounts in units[done:]:
            yield replay_unit(storage, day, accounts)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


SPOOL_PREFIX = "nugen-replay-"


def _replay_unit_spooled(storage: Storage, day: date, account_ids: Sequence[str], folder: str | None) -> ReplayedUnit:
    """In a replay worker: ``replay_unit``, its tables spooled to ``folder`` (held, without a folder or
    if that fails)."""
    with bulk_gc():
        unit = replay_unit(storage, day, account_ids)
    if folder is None:
        return unit.compacted()
    try:
        return unit.spool(folder)
    except OSError as exc:  # e.g. the temporary folder is full: the tables go through the pipe instead
        log.warning("could not spool a replayed unit to %s (%s); sending it whole", folder, exc)
        return unit.compacted()


def _spool_folder() -> str | None:
    """A new folder for replayed units in the temporary folder (``TMPDIR``), after removing those that
    backfills killed before they could clean up (their process is gone); None if none can be made
    (the units then go through the pipe)."""
    try:
        root = tempfile.gettempdir()
    except OSError as exc:
        log.warning("no temporary folder for replayed units (%s); sending them whole", exc)
        return None
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if not name.startswith(SPOOL_PREFIX):
                continue
            pid = name.removeprefix(SPOOL_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    try:
        return tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=root)
    except OSError as exc:
        log.warning("cannot make a folder for replayed units in %s (%s); sending them whole", root, exc)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


REPLAY_WORKER_NICENESS = 10  # how much lower a replay worker's CPU priority is than its backfill's


def _start_worker(parent: int) -> None:
    """In a replay worker: run at a lower CPU priority, and exit once the backfill that started it is
    gone (killed, OOM). A worker keeps the pool's queue open itself, so it would otherwise wait for
    work forever.

    The backfill's own process commits to the lake and loads the warehouse one day after another:
    that is the pace. At equal priority the workers took the cores from it while replaying days
    ahead; lowered, they use what it leaves (a 10-day rebuild into DuckDB: ~46,000 -> ~48,700 rows/s).
    """
    try:
        os.nice(REPLAY_WORKER_NICENESS)
    except (OSError, AttributeError):  # not permitted, or no nice() on this platform: run as is
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time_module.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="nugen-replay-parent", daemon=True).start()


def _sendable(storage: Storage) -> bool:
    try:
        pickle.dumps(storage)
    except Exception:  # noqa: BLE001 - anything that cannot be pickled is replayed in this process
        return False
    return True
