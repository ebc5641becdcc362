"""What a run or backfill did, per account: the source of the CLI's report, exit code and --json."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .records import SUCCESS_OUTCOMES, AccountRun, Outcome

FINE_OUTCOMES = SUCCESS_OUTCOMES | {Outcome.NOT_OBSERVED}
EXIT_LOAD_PENDING = 3  # archived and in the lake, warehouse load pending


@dataclass
class RunSummary:
    command: str
    snapshot_at: datetime | None
    runs: list[AccountRun] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # account -> a failure of our own (warehouse, archive)
    skipped: list[str] = field(default_factory=list)  # already recorded ok/empty for the slot
    pending: dict[str, str] = field(default_factory=dict)  # account -> why its warehouse load is deferred
    caught_up: list[str] = field(default_factory=list)  # "<slot> <account>" loaded from the pending journal
    backlog: list[dict[str, Any]] = field(default_factory=list)  # journal entries left after the command
    started: float = field(default_factory=time.monotonic)
    duration_s: float = 0.0

    def record(self, run: AccountRun) -> None:
        self.runs.append(run)

    def record_error(self, account_id: str, message: str) -> None:
        self.errors[account_id] = message

    def record_pending(self, account_id: str, message: str) -> None:
        self.pending[account_id] = message

    def finish(self) -> RunSummary:
        self.duration_s = time.monotonic() - self.started
        return self

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(str(r.outcome) for r in self.runs)

    @property
    def failed_accounts(self) -> list[str]:
        """Accounts this command failed for: in a live run any bad outcome; in a replay only our own errors
        (an archived failure is history, not a failure of the replay)."""
        bad = set(self.errors)
        if self.command == "run":
            bad |= {r.account_id for r in self.runs if r.outcome not in FINE_OUTCOMES}
        return sorted(bad)

    @property
    def exit_code(self) -> int:
        """0 all done; 1 an account failed; ``EXIT_LOAD_PENDING`` everything is archived and in the
        lake, but warehouse loads are pending (this command's or older ones)."""
        if self.failed_accounts:
            return 1
        return EXIT_LOAD_PENDING if self.pending or self.backlog else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "snapshot_at": self.snapshot_at.isoformat() if self.snapshot_at else None,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
            "outcomes": dict(sorted(self.outcomes.items())),
            "models": sum(r.model_count for r in self.runs),
            "quarantined": sum(r.quarantined_count for r in self.runs),
            "coerced": sum(r.coerced_count for r in self.runs),
            "errors": dict(sorted(self.errors.items())),
            "skipped": self.skipped,
            "load_pending": dict(sorted(self.pending.items())),
            "caught_up": self.caught_up,
            "pending_backlog": self.backlog,
            "accounts": [
                {
                    "account_id": r.account_id,
                    "snapshot_at": r.snapshot_at.isoformat(),
                    "outcome": str(r.outcome),
                    "http_status": r.http_status,
                    "models": r.model_count,
                    "quarantined": r.quarantined_count,
                    "attempts": r.attempts,
                    "error": r.error,
                }
                for r in self.runs
            ],
        }
