"""The journal of warehouse loads still to do: slots archived and in the lake, not yet in the warehouse.

A live run writes one entry per batch under ``pending/`` in the storage root *before* it loads the
batch into the warehouse, and removes it once the load has committed. An entry therefore outlives
every load that did not commit: a warehouse that was busy (a DuckDB file held by a reader), down,
or failing, and a process killed between the lake commit and the warehouse commit. The next run, or
``nugen-etl load-pending``, loads the entries' slots from the raw archive (``pipeline.load_pending``).

An entry is one small JSON file, ``pending/<slot>-<batch>.json`` (one flat folder, empty once every
load committed): the slot, each account with the outcome its answer had, when the load was first
deferred and why. Batches of one slot hold disjoint accounts, so concurrent batches (Airflow's mapped
tasks) never write the same file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..storage import Storage, StorageError

FOLDER = "pending"
LOADING = "loading"  # the reason of an entry whose load is under way
# An entry still "loading" after this long was left by a process that died before its commit; younger
# ones belong to a load in flight (another process's, on the same storage root) and are left alone.
IN_FLIGHT = timedelta(minutes=10)
_SLOT_FORMAT = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class PendingLoad:
    """One journal entry: accounts of one slot whose warehouse load has not committed."""

    key: str
    snapshot_at: datetime
    outcomes: Mapping[str, str]  # account_id -> the outcome of its archived answer
    since: datetime  # when the load was first deferred
    reason: str  # why, as last seen

    @property
    def account_ids(self) -> list[str]:
        return sorted(self.outcomes)

    def in_flight(self, now: datetime) -> bool:
        return self.reason == LOADING and now - self.since < IN_FLIGHT


class PendingJournal:
    """The ``pending/`` entries of one storage root (local or S3)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def mark(self, snapshot_at: datetime, outcomes: Mapping[str, str], *, now: datetime, reason: str = LOADING) -> str:
        """Record the accounts' load of ``snapshot_at`` as not committed; returns the entry's key."""
        accounts = sorted(outcomes)
        batch = hashlib.sha256("\n".join(accounts).encode()).hexdigest()[:20]
        key = f"{FOLDER}/{_slot_name(snapshot_at)}-{batch}.json"
        self._write(key, snapshot_at, outcomes, since=now, reason=reason)
        return key

    def update(self, entry: PendingLoad, outcomes: Mapping[str, str], reason: str) -> None:
        """Keep ``entry`` for ``outcomes`` only (the accounts still not loaded), with the latest reason."""
        self._write(entry.key, entry.snapshot_at, outcomes, since=entry.since, reason=reason)

    def clear(self, key: str) -> None:
        self._storage.delete(key)

    def entries(self) -> list[PendingLoad]:
        """Every entry, oldest slot first. An unreadable entry raises ``StorageError`` naming it; it is
        never deleted here."""
        _, names = self._storage.listdir(FOLDER)
        found = [self._read(f"{FOLDER}/{name}") for name in names if name.endswith(".json")]
        return sorted((e for e in found if e is not None), key=lambda e: (e.snapshot_at, e.key))

    def _write(self, key: str, snapshot_at: datetime, outcomes: Mapping[str, str], *, since: datetime, reason: str) -> None:
        body = {
            "snapshot_at": snapshot_at.isoformat(),
            "outcomes": dict(sorted(outcomes.items())),
            "since": since.isoformat(),
            "reason": reason,
        }
        self._storage.write_bytes_atomic(key, json.dumps(body, sort_keys=True).encode())

    def _read(self, key: str) -> PendingLoad | None:
        try:
            body = json.loads(self._storage.read_bytes(key))
            return PendingLoad(
                key=key,
                snapshot_at=datetime.fromisoformat(body["snapshot_at"]),
                outcomes={str(a): str(o) for a, o in body["outcomes"].items()},
                since=datetime.fromisoformat(body["since"]),
                reason=str(body.get("reason", "")),
            )
        except FileNotFoundError:  # cleared by a concurrent load since the listing
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"pending-load journal entry {key} is unreadable ({exc}); it is left in place: fix or delete it") from None


def _slot_name(snapshot_at: datetime) -> str:
    return snapshot_at.astimezone(UTC).strftime(_SLOT_FORMAT)
