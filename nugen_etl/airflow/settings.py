"""The environment variables the DAGs and their tasks read, parsed once at the edge into ``DagSettings``.

Parse time (read by the DAG files themselves, standard library only, no package import):
``NUGEN_SCHEDULE``, ``NUGEN_CATCHUP``, ``NUGEN_START_DATE``, ``NUGEN_TASK_RETRIES``,
``NUGEN_RETRY_DELAY_S``. Task time (read here, inside the tasks): everything in ``DagSettings``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ..config import parse_duration
from ..errors import ConfigError

# Read by dags/*.py at parse time (kept here so tests can check the compose file against one list).
PARSE_TIME_ENV = (
    "NUGEN_SCHEDULE",
    "NUGEN_CATCHUP",
    "NUGEN_START_DATE",
    "NUGEN_TASK_RETRIES",
    "NUGEN_RETRY_DELAY_S",
    "NUGEN_COMPACT_SCHEDULE",
)
CONFIG_ENV = "NUGEN_ETL_CONFIG"  # TOML config file (optional)
STORAGE_ENV = "NUGEN_STORAGE_ROOT"  # overrides storage.root
GRANULARITY_ENV = "NUGEN_GRANULARITY"  # overrides schedule.granularity
BATCH_ENV = "NUGEN_BATCH_SIZE"  # accounts per mapped snapshot_batch task
LATENESS_ENV = "NUGEN_LATENESS"  # how old an interval end may be and still call the API
TASK_TIME_ENV = (CONFIG_ENV, STORAGE_ENV, GRANULARITY_ENV, BATCH_ENV, LATENESS_ENV)
ALL_ENV = PARSE_TIME_ENV + TASK_TIME_ENV

ACCOUNTS_VARIABLE = "nugen_accounts"  # JSON list of account ids
DEFAULT_CONNECTION = "nugen_default"
WAREHOUSE_CONNECTION = "nugen_warehouse"
STORAGE_CONNECTION = "nugen_storage"  # S3 credentials (aws): login = key id, password = secret
DEFAULT_BATCH_SIZE = 200
MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default
_DURATION_RE = re.compile(r"(\d+)\s*(m|min|h|d)")


@dataclass(frozen=True)
class DagSettings:
    """Task-time settings; ``lateness`` None means two slots (the CLI's rule for ``--at``)."""

    config_path: Path | None = None
    storage_root: str | None = None
    granularity: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    lateness: timedelta | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DagSettings:
        path = environ.get(CONFIG_ENV) or None
        batch = environ.get(BATCH_ENV) or str(DEFAULT_BATCH_SIZE)
        if not batch.isdigit() or int(batch) < 1:
            raise ConfigError(f"{BATCH_ENV}: expected a positive integer, got {batch!r}")
        lateness = environ.get(LATENESS_ENV)
        granularity = environ.get(GRANULARITY_ENV) or None
        if granularity:
            parse_duration(granularity, GRANULARITY_ENV)
        return cls(
            config_path=Path(path) if path else None,
            storage_root=environ.get(STORAGE_ENV) or None,
            granularity=granularity,
            batch_size=int(batch),
            lateness=_lateness(lateness) if lateness else None,
        )


def _lateness(text: str) -> timedelta:
    """A positive duration like '90m', '3h' or '2d' (unlike a granularity it need not divide a day)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{LATENESS_ENV}: expected a duration like '90m', '2h' or '1d', got {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    return {"m": timedelta(minutes=n), "min": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
