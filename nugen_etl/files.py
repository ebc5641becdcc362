"""Atomic file replacement: write aside in the same folder, then rename over the final name."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
