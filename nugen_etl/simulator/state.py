"""The simulator's mutable side: accounts and keys, the simulated clock, fault queues and request counts."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from nugen_etl.simulator import catalog
from nugen_etl.simulator.faults import Fault


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return t.astimezone(UTC)


class SimulatorState:
    """Everything the simulated vendor knows; thread-safe, shared by all server threads.

    Accounts are ``acct-0001`` .. ``acct-{accounts:04d}``; when ``accounts >= 3`` the last one has no
    models (the API answers 404 "No aligned models found"). Payloads follow the formulas in
    ``nugen_etl.simulator.catalog``. ``start`` defaults to the current UTC hour. Every answer waits
    ``latency_ms``; with ``fault_rate`` > 0 that fraction of account requests (seeded) gets a 429
    with ``Retry-After: 1`` or a 503 instead, unless a queued fault applies.
    """

    def __init__(
        self,
        seed: int = 0,
        accounts: int = 3,
        *,
        models: int = 4,
        latency_ms: float = 0.0,
        start: datetime | None = None,
        fault_rate: float = 0.0,
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        if accounts < 1 or models < 1:
            raise ValueError("accounts and models must be >= 1")
        if latency_ms < 0 or not 0.0 <= fault_rate <= 1.0:
            raise ValueError("latency_ms must be >= 0 and fault_rate within [0, 1]")
        now = datetime.now(UTC)
        self.seed = seed
        self.models = models
        # account_id -> a name its first model goes by instead (the demo shows markup in a name as text)
        self.renamed = dict(renamed or {})
        self.latency_ms = latency_ms
        self.fault_rate = fault_rate
        self.start = _aware(start, "start") if start else now.replace(minute=0, second=0, microsecond=0)
        self.account_ids = [f"acct-{n:04d}" for n in range(1, accounts + 1)]
        self.empty_account_id = self.account_ids[-1] if accounts >= 3 else None
        self._accounts = frozenset(self.account_ids)
        self._by_key = {self.api_key(a): a for a in self.account_ids}
        self._lock = threading.Lock()
        self._clock: datetime | None = None
        self._faults: dict[str, deque[Fault]] = {}
        self._counts: Counter[str | None] = Counter()
        self._paths: list[str] = []
        self._random = random.Random(seed)
        self._specs: dict[str, tuple[catalog.ModelSpec, ...]] = {}
        self._bodies: dict[str, tuple[int, bytes]] = {}

    def api_key(self, account_id: str) -> str:
        """The one key that authenticates ``account_id``: ``"sk-sim-"`` + 40 hex of an HMAC of seed and id."""
        mac = hmac.new(f"nugen-sim:{self.seed}".encode(), account_id.encode(), hashlib.sha256)
        return "sk-sim-" + mac.hexdigest()[:40]

    def account_for_key(self, key: str) -> str | None:
        """The account a bearer key belongs to, or None for an unknown key."""
        return self._by_key.get(key)

    def set_time(self, t: datetime | None) -> None:
        """Freeze the simulated clock at ``t`` (aware); ``None`` returns to real UTC time."""
        value = None if t is None else _aware(t, "t")
        with self._lock:
            self._clock = value

    def now(self) -> datetime:
        """The simulated time: the frozen clock if set, else real UTC now."""
        with self._lock:
            clock = self._clock
        return clock if clock is not None else datetime.now(UTC)

    def specs(self, account_id: str) -> tuple[catalog.ModelSpec, ...]:
        """The model specs of an account (empty for the empty account); KeyError for an unknown one."""
        if account_id not in self._accounts:
            raise KeyError(account_id)
        with self._lock:
            found = self._specs.get(account_id)
        if found is None:
            count = 0 if account_id == self.empty_account_id else self.models
            found = catalog.build_specs(self.seed, account_id, count, self.start)
            if found and account_id in self.renamed:
                found = (dataclasses.replace(found[0], name=self.renamed[account_id]), *found[1:])
            with self._lock:
                self._specs[account_id] = found
        return found

    def _spec(self, account_id: str, i: int) -> catalog.ModelSpec:
        specs = self.specs(account_id)
        if not 0 <= i < len(specs):
            raise IndexError(f"{account_id} has no model {i}")
        return specs[i]

    def models_at(self, account_id: str, t: datetime) -> list[dict[str, Any]]:
        """Exactly the objects the server lists for ``account_id`` at simulated time ``t``."""
        t = _aware(t, "t")
        return [catalog.model_at(s, self.start, t) for s in self.specs(account_id) if s.created_at <= t]

    def body_at(self, account_id: str, t: datetime) -> bytes:
        """The serialized 200 body for ``models_at(account_id, t)``, cached per account for the current slot."""
        t = _aware(t, "t")
        slot = catalog.slot_of(self.start, t)
        with self._lock:
            cached = self._bodies.get(account_id)
        if slot >= 0 and cached is not None and cached[0] == slot:
            return cached[1]
        payload = {"domain_aligned_models": self.models_at(account_id, t)}
        body = json.dumps(payload, separators=(",", ":")).encode()
        if slot >= 0:
            with self._lock:
                self._bodies[account_id] = (slot, body)
        return body

    def deploy_at(self, account_id: str, i: int) -> datetime | None:
        """When model ``i`` changes from undeployed to deployed (its id gains "-deployed"), or None."""
        return self._spec(account_id, i).deploy_at

    def reset_at(self, account_id: str, i: int) -> datetime | None:
        """When model ``i``'s usage counter restarts from a small number, or None if it never does."""
        return self._spec(account_id, i).reset_at

    def usage_at(self, account_id: str, i: int, t: datetime) -> int:
        """Model ``i``'s ``usage_count`` at ``t``."""
        return catalog.usage_at(self._spec(account_id, i), self.start, _aware(t, "t"))

    def inject(self, account_id: str, faults: Iterable[Fault]) -> None:
        """Queue faults for ``account_id``; each later request to it consumes the next one, in order."""
        with self._lock:
            self._faults.setdefault(account_id, deque()).extend(faults)

    def next_fault(self, account_id: str) -> Fault | None:
        """Consume the fault for this request: the queued one, else a random one at ``fault_rate``."""
        with self._lock:
            queue = self._faults.get(account_id)
            if queue:
                return queue.popleft()
            if self.fault_rate and self._random.random() < self.fault_rate:
                return Fault.status(429, retry_after="1") if self._random.random() < 0.5 else Fault.status(503)
        return None

    def count_request(self, account_id: str | None) -> None:
        """Record one request (``account_id`` None when no valid key identified an account)."""
        with self._lock:
            self._counts[account_id] += 1

    def log_path(self, path: str) -> None:
        """Record the request target (path and query) of every request received, in order."""
        with self._lock:
            self._paths.append(path)

    def request_paths(self) -> list[str]:
        """Every request target received so far (reset by ``reset_counts``)."""
        with self._lock:
            return list(self._paths)

    def pending_faults(self, account_id: str) -> int:
        """Queued faults not yet consumed by a request of ``account_id``."""
        with self._lock:
            return len(self._faults.get(account_id, ()))

    def request_count(self, account_id: str | None = None) -> int:
        """Requests received in total, or those authenticated as ``account_id``."""
        with self._lock:
            if account_id is None:
                return sum(self._counts.values())
            return self._counts[account_id]

    def reset_counts(self) -> None:
        """Zero all request counts and forget the request log."""
        with self._lock:
            self._counts.clear()
            self._paths.clear()
