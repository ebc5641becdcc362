"""Snapshot slots: parsing, flooring to the granularity, and the stamps used in file names."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from .errors import ConfigError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(text: str, where: str = "--at") -> datetime:
    """ISO 8601 -> aware UTC datetime; a value without offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ConfigError(f"{where}: not an ISO 8601 timestamp: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_day(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: not a date (YYYY-MM-DD): {text!r}") from None


def floor_slot(moment: datetime, granularity: timedelta) -> datetime:
    """The start of the slot that contains ``moment``.

    >>> floor_slot(datetime(2026, 1, 2, 3, 47, tzinfo=UTC), timedelta(hours=1)).isoformat()
    '2026-01-02T03:00:00+00:00'
    """
    moment = moment.astimezone(UTC)
    return moment - ((moment - EPOCH) % granularity)


def slot_stamp(moment: datetime) -> str:
    """Compact, sortable, path-safe UTC stamp.

    >>> slot_stamp(datetime(2026, 1, 2, 3, 0, tzinfo=UTC))
    '20260102T030000Z'
    """
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_SLOT_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", re.ASCII)


def parse_slot_stamp(text: str) -> datetime:
    """The moment of a ``slot_stamp`` (ValueError if ``text`` is not one).

    >>> parse_slot_stamp("20260102T030000Z").isoformat()
    '2026-01-02T03:00:00+00:00'
    """
    match = _SLOT_STAMP.fullmatch(text)  # ~10x cheaper than strptime, which a replay calls per archived answer
    if match is None:
        raise ValueError(f"not a slot stamp: {text!r}")
    year, month, day, hour, minute, second = map(int, match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[start of first, start of the day after last) in UTC."""
    if last < first:
        raise ConfigError(f"--to ({last}) is before --from ({first})")
    return (datetime.combine(first, time(), UTC), datetime.combine(last + timedelta(days=1), time(), UTC))
