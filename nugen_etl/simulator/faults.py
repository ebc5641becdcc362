"""Faults the simulator can be told to serve instead of (or before) a normal answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "malformed", "slow", "truncated", "reset", "body", "stall"]

VALIDATION_DETAIL = [
    {"loc": ["header", "Authorization"], "msg": "field required", "type": "value_error.missing"},
]
_DEFAULT_DETAIL: dict[int, object] = {
    400: "Bad request",
    401: "Invalid API key",
    403: "Not authenticated",
    404: "Not Found",
    422: VALIDATION_DETAIL,
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def detail_body(detail: object) -> bytes:
    """The vendor's error body ``{"detail": ...}`` as JSON bytes."""
    return json.dumps({"detail": detail}).encode()


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by exactly one request. Build it with the classmethods."""

    kind: FaultKind
    code: int = 200
    payload: bytes | None = None
    content_type: str = "application/json"
    retry_after: str | None = None
    delay: float = 0.0

    @classmethod
    def status(cls, code: int, *, retry_after: str | None = None, body: bytes | None = None, content_type: str | None = None) -> Fault:
        """Answer ``code`` with the vendor's ``{"detail": ...}`` body for it, or ``body`` if given.

        ``retry_after`` becomes the ``Retry-After`` header verbatim (seconds or an HTTP date).
        Without ``content_type``, a given body that does not start with ``{`` or ``[`` is served as HTML.
        """
        if body is None:
            body = detail_body(_DEFAULT_DETAIL.get(code, "Error"))
        if content_type is None:
            is_json = body.lstrip()[:1] in (b"{", b"[")
            content_type = "application/json" if is_json else "text/html; charset=utf-8"
        return cls("status", code=code, payload=body, content_type=content_type, retry_after=retry_after)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 ``application/json`` with truncated JSON text (a complete HTTP message)."""
        return cls("malformed", payload=b'{"domain_aligned_models": [{"id": "alignment-')

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait ``seconds`` (on top of the state's latency), then answer normally."""
        return cls("slow", delay=seconds)

    @classmethod
    def truncated(cls) -> Fault:
        """Send 200 headers whose Content-Length promises the full body, half the body, then close."""
        return cls("truncated")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Send 200 headers and half the body, then go silent for ``seconds`` and close (a read
        timeout in the middle of the body for any client whose timeout is shorter)."""
        return cls("stall", delay=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection without sending any answer."""
        return cls("reset")

    @classmethod
    def body(cls, body: bytes, status: int = 200, content_type: str = "application/json") -> Fault:
        """Answer ``status`` with exactly ``body`` (e.g. JSON that is not an object)."""
        return cls("body", code=status, payload=body, content_type=content_type)
