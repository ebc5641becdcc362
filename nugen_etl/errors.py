"""The one error tree of nugen-etl.

    NugenEtlError
     +-- ConfigError          bad configuration or usage (CLI exit 2)
     +-- FetchError           an account's answer could not be had (carries account, status, attempts)
     |    +-- AuthError       401/403: the key was rejected, never retried
     +-- PayloadError         an answer that is not the documented shape
     +-- WarehouseError       the warehouse refused a load or a migration
          +-- WarehouseBusy   another process holds the (DuckDB) warehouse
          +-- WarehouseUnavailable  the connection was lost and could not be opened again

Messages carry context (account id, HTTP status, attempt) and never a secret.
"""

from __future__ import annotations


class NugenEtlError(Exception):
    """Root of every error nugen-etl raises on purpose."""


class ConfigError(NugenEtlError):
    """The configuration file or the command line is wrong; the message names the field."""


class FetchError(NugenEtlError):
    def __init__(self, message: str, *, account_id: str | None = None,
                 http_status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.account_id = account_id
        self.http_status = http_status
        self.attempts = attempts


class AuthError(FetchError):
    """The vendor rejected the account's key (401/403)."""


class PayloadError(NugenEtlError):
    """An answer body that is not the documented JSON shape."""


class WarehouseError(NugenEtlError):
    """A warehouse load or migration failed."""


class WarehouseBusy(WarehouseError):
    """Another process holds the warehouse's write lock."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse connection was lost and reconnecting failed; the next load tries again."""
