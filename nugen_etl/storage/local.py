"""A local folder as storage: atomic file replacement (write aside in the same folder, fsync, rename
over the final name, fsync the folder)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .base import Storage, check_key


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> None:
    """Write ``path`` so that readers see either the old file or the complete new one, never a part.

    The temporary name starts with a dot and ends in ``.tmp`` so dataset globs never match it.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fh = open(tmp, "xb")
    except FileNotFoundError:  # the folder is new (creating it first costs a syscall per write)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(tmp, "xb")
    try:
        with fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def remove_file(path: Path, *, fsync: bool = True) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if fsync:
        _fsync_dir(path.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def as_storage(root: Storage | os.PathLike[str], *, fsync: bool = True) -> Storage:
    """``root`` itself, or ``LocalStorage(root, fsync=fsync)`` for a local path."""
    if isinstance(root, os.PathLike):
        return LocalStorage(Path(root), fsync=fsync)
    return root


@dataclass(frozen=True)
class LocalStorage:
    """A local folder. Writes go aside and are renamed into place, fsynced (file and folder) unless
    ``fsync`` is off; temporary names are dot-named ``*.tmp`` so dataset globs never match them."""

    root: Path
    fsync: bool = True

    @property
    def display(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def write_bytes_atomic(self, key: str, data: bytes) -> None:
        def write(fh: BinaryIO) -> None:
            fh.write(data)

        atomic_write(self.path(key), write, fsync=self.fsync)

    def read_bytes(self, key: str) -> bytes:
        with open(os.path.join(self.root, check_key(key)), "rb") as fh:  # no Path objects: a replay reads thousands
            return fh.read()

    def delete(self, key: str) -> None:
        remove_file(self.path(key), fsync=self.fsync)

    def listdir(self, folder: str) -> tuple[list[str], list[str]]:
        try:
            with os.scandir(self.path(folder)) as entries:
                found = [(e.name, e.is_dir()) for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        return sorted(n for n, d in found if d), sorted(n for n, d in found if not d)

    def delta_location(self) -> tuple[str, dict[str, str]]:
        self.root.mkdir(parents=True, exist_ok=True)
        return str(self.root.resolve()), {}
