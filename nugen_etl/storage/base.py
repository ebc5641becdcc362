"""The storage interface: atomic whole-object writes, reads, deletes and listings under one root."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import NugenEtlError


class StorageError(NugenEtlError, OSError):
    """An object store failed an operation. An OSError, so callers treat it like a failed disk."""


@runtime_checkable
class Storage(Protocol):
    """Atomic whole-object writes, reads, deletes and one-level listings under one root."""

    @property
    def display(self) -> str:
        """The root for messages: a folder or ``s3://bucket/prefix`` (never a credential)."""
        ...

    def write_bytes_atomic(self, key: str, data: bytes) -> None:
        """Create or replace ``key``; a reader sees the previous content or ``data``, never a part."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole content of ``key``; FileNotFoundError when it does not exist."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it does not exist."""
        ...

    def listdir(self, folder: str) -> tuple[list[str], list[str]]:
        """(sub-folder names, file names) directly under ``folder``, each sorted; empty when absent."""
        ...

    def delta_location(self) -> tuple[str, dict[str, str]]:
        """The root as delta-rs addresses it, and the storage options it needs (may hold credentials)."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a relative path that stays under the root, else ValueError.

    >>> check_key("raw/account_id=acme/x.raw.gz")
    'raw/account_id=acme/x.raw.gz'
    >>> check_key("raw/../../etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: unsafe storage key 'raw/../../etc/passwd': keys are relative paths without '.', '..' or empty segments
    """
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or "\\" in key
        or not key.isprintable()
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise ValueError(f"unsafe storage key {key!r}: keys are relative paths without '.', '..' or empty segments")
    return key
