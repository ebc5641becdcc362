"""The raw archive: every API answer as received, stored before anything is transformed.

Layout: ``ROOT/raw/account_id=ID/snapshot_date=YYYY-MM-DD/<slot>__<fetched>__<nonce>.raw.gz``.
A file is gzip of one JSON line of metadata (status, fetched_at, kept headers, attempts, error;
never the Authorization header) followed by the body bytes exactly as received.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .config import validate_account_id
from .files import atomic_write
from .records import RawAnswer
from .slots import parse_slot_stamp, parse_timestamp, slot_stamp

RAW_DIR = "raw"
SUFFIX = ".raw.gz"
FORMAT_VERSION = 1


def raw_answer_path(root: Path, raw: RawAnswer) -> Path:
    account_id = validate_account_id(raw.account_id)
    fetched = raw.fetched_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"{slot_stamp(raw.snapshot_at)}__{fetched}__{uuid.uuid4().hex[:8]}{SUFFIX}"
    return root / RAW_DIR / f"account_id={account_id}" / f"snapshot_date={raw.snapshot_at.astimezone(UTC).date()}" / name


def write_raw_answer(root: Path, raw: RawAnswer, *, fsync: bool = True) -> Path:
    """Archive one answer atomically; returns its path."""
    meta = {
        "format": FORMAT_VERSION,
        "account_id": raw.account_id,
        "snapshot_at": raw.snapshot_at.isoformat(),
        "fetched_at": raw.fetched_at.isoformat(),
        "http_status": raw.http_status,
        "headers": {k: v for k, v in raw.headers.items() if k.lower() != "authorization"},
        "attempts": raw.attempts,
        "error": raw.error,
    }
    path = raw_answer_path(root, raw)

    def write(fh: BinaryIO) -> None:
        with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=1, mtime=0) as gz:
            gz.write(json.dumps(meta, ensure_ascii=True).encode() + b"\n")
            gz.write(raw.body)

    atomic_write(path, write, fsync=fsync)
    return path


def read_raw_answer(path: Path) -> RawAnswer:
    with gzip.open(path, "rb") as gz:
        data = gz.read()
    head, _, body = data.partition(b"\n")
    meta = json.loads(head)
    return RawAnswer(
        account_id=meta["account_id"],
        snapshot_at=parse_timestamp(meta["snapshot_at"]),
        fetched_at=parse_timestamp(meta["fetched_at"]),
        http_status=meta["http_status"],
        body=body,
        headers=dict(meta.get("headers") or {}),
        attempts=int(meta.get("attempts") or 1),
        error=meta.get("error"),
    )


def list_archived_slots(root: Path, *, start: datetime, end: datetime,
                        account_ids: Iterable[str] | None = None) -> Iterator[tuple[str, datetime, list[Path]]]:
    """(account_id, slot, files oldest-first by fetch time) for every archived slot in [start, end)."""
    base = root / RAW_DIR
    if account_ids is None:
        folders = sorted(p for p in base.glob("account_id=*") if p.is_dir())
    else:
        folders = [base / f"account_id={validate_account_id(a)}" for a in account_ids]
    for folder in folders:
        account_id = folder.name.removeprefix("account_id=")
        by_slot: dict[datetime, list[Path]] = {}
        for day_dir in sorted(folder.glob("snapshot_date=*")):
            for path in day_dir.glob(f"*{SUFFIX}"):
                if path.name.startswith("."):
                    continue
                slot = parse_slot_stamp(path.name.split("__", 1)[0])
                if start <= slot < end:
                    by_slot.setdefault(slot, []).append(path)
        for slot in sorted(by_slot):
            yield account_id, slot, sorted(by_slot[slot], key=lambda p: p.name)
