"""The one error tree of nugen-etl.

    NugenEtlError
     +-- ConfigError          bad configuration or usage (CLI exit 2)
     +-- StorageError         an object store failed an operation (storage.py; also an OSError)
     +-- LakeError            a Delta commit failed (sinks/lake.py)
     |    +-- LakeCommitConflict  a concurrent commit won past the retries
     |    +-- LegacyLakeLayout    the root still holds 0.1's per-slot Parquet folders
     +-- WarehouseError       the warehouse refused a load or a migration
     |    +-- WarehouseBusy   another process holds the (DuckDB) warehouse
     |    +-- WarehouseUnavailable  the connection was lost and could not be opened again
     +-- BatchFailed          some accounts of an Airflow batch failed; Airflow retries it (airflow/tasks.py)

An account's fetch never raises: its failure is its run's outcome (``records.Outcome``). Messages
carry context (account id, HTTP status, attempt) and never a secret.
"""

from __future__ import annotations


class NugenEtlError(Exception):
    """Root of every error nugen-etl raises on purpose."""


class ConfigError(NugenEtlError):
    """The configuration file or the command line is wrong; the message names the field."""


class WarehouseError(NugenEtlError):
    """A warehouse load or migration failed."""


class WarehouseBusy(WarehouseError):
    """Another process holds the warehouse's write lock."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse connection was lost and reconnecting failed; the next load tries again."""
