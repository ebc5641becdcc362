"""Masking of secrets in text that could reach a log, an error message or a stored record."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_BEARER_RE = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+")


def redact(text: str, *secrets: str) -> str:
    """Return ``text`` with every given secret and any ``Bearer <token>`` masked.

    >>> redact("401 for Bearer sk-123 (key sk-123)", "sk-123")
    '401 for Bearer *** (key ***)'
    >>> redact("nothing to hide")
    'nothing to hide'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _BEARER_RE.sub(lambda m: m.group(1) + MASK, text)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print and log).

    >>> mask_url("postgresql://etl:s3cret@db:5432/wh")
    'postgresql://etl:***@db:5432/wh'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Secret:
    """A secret string whose repr/str never shows it; ``reveal()`` is the one way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
