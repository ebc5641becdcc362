"""HTTP client for the vendor's List Aligned Models endpoint: one bounded, retried GET per account.

``ApiClient.fetch_account`` never raises for network or HTTP trouble; it returns a
``RawAnswer`` whose ``error`` says what went wrong, and leaves classifying the answer
(ok / empty / auth_failed / failed) to the pipeline. The API key is sent only in the
``Authorization`` header and is kept out of every log record, error text and record -- even
when a server echoes it back: every copy of the key in a received body is masked as ``***``
before the answer leaves the client.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType

import httpx

from nugen_etl import __version__
from nugen_etl.errors import ConfigError
from nugen_etl.records import RawAnswer
from nugen_etl.redaction import MASK, redact

log = logging.getLogger("nugen_etl.fetch")

ALIGNED_MODELS_PATH = "/api/v3/models/aligned"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
KEPT_HEADERS = frozenset({"content-type", "retry-after", "date", "x-request-id", "etag"})
KEPT_HEADER_PREFIXES = ("x-ratelimit-",)
USER_AGENT = f"nugen-etl/{__version__}"

# The least time worth starting another attempt with; below it the deadline counts as spent.
MIN_ATTEMPT_S = 1.0
_MAX_DETAIL_CHARS = 200
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an HTTP header value can carry as-is


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one account: attempts, full-jitter backoff, Retry-After cap, total deadline."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    retry_after_cap_s: float = 60.0
    deadline_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if min(self.base_delay_s, self.max_delay_s, self.retry_after_cap_s) < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if not self.deadline_s > 0:
            raise ValueError("RetryPolicy.deadline_s must be positive")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter sleep after failed attempt number ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class _Attempt:
    """What one attempt produced; ``failure`` is set when it produced no usable answer."""

    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    timed_out: bool = False
    retryable: bool = False

    def summary(self) -> str:
        return f"HTTP {self.status}" if self.failure is None else self.failure


class _BodyTooLarge(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


class ApiClient:
    """A thread-safe client for ``GET /api/v3/models/aligned``, sharing one connection pool.

    ``sleep``, ``monotonic``, ``rng`` and ``now`` (the UTC wall clock, for ``fetched_at``
    and HTTP-date ``Retry-After``) are injectable so tests never wait.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        max_concurrency: int = 16,
        max_body_bytes: int = 64 * 2**20,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        verify: bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if max_concurrency < 1 or max_body_bytes < 0:
            raise ValueError("max_concurrency must be at least 1 and max_body_bytes not negative")
        self.base_url = _check_base_url(base_url)
        self.url = self.base_url + ALIGNED_MODELS_PATH
        self.timeout_s = timeout_s
        self.retry = retry
        self.max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng if rng is not None else random.Random()
        self._now = now if now is not None else _utc_now
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._client = httpx.Client(
            transport=transport,
            limits=limits,
            verify=verify,
            follow_redirects=False,
            timeout=timeout_s,
            # Accounts share the pool, so no cookie may carry over from one account's answer to the next.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            # identity: the stored body is the bytes on the wire and the size cap is exact.
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "identity"},
        )

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r})"

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the shared connection pool."""
        self._client.close()

    def fetch_account(self, account_id: str, api_key: str, *, snapshot_at: datetime) -> RawAnswer:
        """Fetch one account's aligned models, retrying what can succeed later, within the deadline.

        Returns the final answer as received. ``error`` is None for a final 2xx/4xx answer and
        says what failed otherwise (transport failure, retries or deadline exhausted, body too large).
        Raises only for bad arguments (``ConfigError`` for an unusable key, ``ValueError``).
        """
        _check_args(account_id, api_key, snapshot_at)
        policy = self.retry
        headers = {"Authorization": f"Bearer {api_key}"}
        started = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            remaining = policy.deadline_s - (self._monotonic() - started)
            attempt_started = self._monotonic()
            timeout_s = max(min(self.timeout_s, remaining), 0.001)  # a late sleep must not make it <= 0
            result = self._attempt(headers, api_key, timeout_s, started)
            masked = mask_key(result.body, api_key)
            if masked is not result.body:
                log.warning("account %s: the answer echoed the API key; masked before it is stored", account_id)
                result = replace(result, body=masked)
            log.debug(
                "account %s attempt %d/%d: %s in %.3fs",
                account_id,
                attempt,
                policy.max_attempts,
                result.summary(),
                self._monotonic() - attempt_started,
            )
            if not result.retryable:
                return self._answer(account_id, snapshot_at, result, attempt, _final_error(result, attempt))
            if attempt >= policy.max_attempts:
                return self._answer(account_id, snapshot_at, result, attempt, _exhausted_error(result, attempt))
            delay = self._retry_delay(result, attempt)
            remaining = policy.deadline_s - (self._monotonic() - started)
            if delay + MIN_ATTEMPT_S > remaining:
                error = f"deadline of {policy.deadline_s:g}s exhausted after {_attempts(attempt)} (last: {result.summary()})"
                return self._answer(account_id, snapshot_at, result, attempt, error)
            log.warning(
                "account %s attempt %d/%d: %s; retrying in %.2fs", account_id, attempt, policy.max_attempts, result.summary(), delay
            )
            self._sleep(delay)

    def _attempt(self, headers: Mapping[str, str], api_key: str, timeout_s: float, started: float) -> _Attempt:
        """One GET with its body read in full (so a cut-off body fails this attempt)."""
        status: int | None = None
        kept: dict[str, str] = {}
        try:
            with self._client.stream("GET", self.url, headers=headers, timeout=timeout_s) as response:
                status = response.status_code
                kept = _keep_headers(response.headers, api_key)
                body = self._read_body(response, started)
            if self._monotonic() - started > self.retry.deadline_s:
                raise _DeadlinePassed
        except httpx.TimeoutException as exc:
            return _Attempt(failure=type(exc).__name__, timed_out=True, retryable=True)
        except httpx.TransportError as exc:
            return _Attempt(failure=_describe(exc, api_key), retryable=True)
        except httpx.RequestError as exc:  # e.g. an undecodable body: no network fault, a retry won't help
            return _Attempt(status=status, headers=kept, failure=_describe(exc, api_key))
        except _BodyTooLarge:
            return _Attempt(status=status, headers=kept, failure=f"response body exceeds {self.max_body_bytes} bytes")
        except _DeadlinePassed:
            return _Attempt(failure=f"no complete answer within the {self.retry.deadline_s:g}s deadline", timed_out=True)
        return _Attempt(status=status, body=body, headers=kept, retryable=status in RETRYABLE_STATUSES)

    def _read_body(self, response: httpx.Response, started: float) -> bytes:
        cap = self.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap and "content-encoding" not in response.headers:
            raise _BodyTooLarge
        body = bytearray()
        for chunk in response.iter_bytes():
            if len(body) + len(chunk) > cap:
                raise _BodyTooLarge
            body += chunk
            if self._monotonic() - started > self.retry.deadline_s:
                raise _DeadlinePassed
        return bytes(body)

    def _retry_delay(self, result: _Attempt, attempt: int) -> float:
        """Retry-After when the answer gives a usable one (capped), else full-jitter backoff."""
        if "retry-after" in result.headers:
            wait = parse_retry_after(result.headers["retry-after"], date=result.headers.get("date"), now=self._now)
            if wait is not None:
                return min(wait, self.retry.retry_after_cap_s)
        return self.retry.backoff_s(attempt, self._rng)

    def _answer(self, account_id: str, snapshot_at: datetime, result: _Attempt, attempts: int, error: str | None) -> RawAnswer:
        if error is not None:
            log.warning("account %s: %s", account_id, error)
        return RawAnswer(
            account_id=account_id,
            snapshot_at=snapshot_at,
            fetched_at=self._now(),
            http_status=result.status,
            body=result.body,
            headers=result.headers,
            attempts=attempts,
            error=error,
        )


def parse_retry_after(value: str, *, date: str | None = None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` value (delta seconds or HTTP-date), never negative.

    An HTTP-date is measured from the answer's own ``Date`` header when it has one (no clock
    skew), else from ``now()``. Returns None for a value that is neither.

    >>> parse_retry_after("2")
    2.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", date="Wed, 21 Oct 2015 07:28:00 GMT")
    30.0
    >>> parse_retry_after("soon") is None
    True
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    when = _parse_http_date(value)
    if when is None:
        return None
    reference = _parse_http_date(date) if date else None
    if reference is None:
        reference = (now or _utc_now)()
    return max((when - reference).total_seconds(), 0.0)


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def mask_key(body: bytes, api_key: str) -> bytes:
    """``body`` with every copy of ``api_key`` (as is, or JSON-escaped) replaced by ``***``; the same
    object when there is none.

    >>> mask_key(b'{"detail": "Invalid API key sk-1"}', "sk-1")
    b'{"detail": "Invalid API key ***"}'
    """
    if not body or not api_key:
        return body
    forms = {api_key, json.dumps(api_key)[1:-1], api_key.replace("/", "\\/")}
    masked = body
    for form in forms:
        masked = masked.replace(form.encode(), MASK.encode())
    return body if masked == body else masked


def _keep_headers(headers: httpx.Headers, api_key: str) -> dict[str, str]:
    kept: dict[str, list[str]] = {}
    for name, value in headers.multi_items():
        name = name.lower()
        if name in KEPT_HEADERS or name.startswith(KEPT_HEADER_PREFIXES):
            kept.setdefault(name, []).append(redact(value, api_key))
    return {name: ", ".join(values) for name, values in kept.items()}


def _final_error(result: _Attempt, attempts: int) -> str | None:
    """The error of an answer that is not retried: None when the pipeline should classify it."""
    if result.timed_out:
        return f"timed out after {_attempts(attempts)}: {result.failure}"
    if result.failure is not None:
        return result.failure
    assert result.status is not None
    if 200 <= result.status < 300 or 400 <= result.status < 500:
        return None
    if 300 <= result.status < 400:
        return f"HTTP {result.status}: redirects are not followed"
    return f"HTTP {result.status} is not retried"


def _exhausted_error(result: _Attempt, attempts: int) -> str:
    if result.failure is None:
        return f"HTTP {result.status} after {_attempts(attempts)}"
    if result.timed_out:
        return f"timed out after {_attempts(attempts)}: {result.failure}"
    return f"transport error after {_attempts(attempts)}: {result.failure}"


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _describe(exc: Exception, api_key: str) -> str:
    """``Name: message`` of an httpx exception, with the key masked and the length bounded."""
    text = redact(str(exc), api_key)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return detail[:_MAX_DETAIL_CHARS]


def _check_base_url(base_url: str) -> str:
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an absolute http(s) URL")
    if url.userinfo:
        raise ValueError("base_url must not carry credentials")
    return base_url.rstrip("/")


def _check_args(account_id: str, api_key: str, snapshot_at: datetime) -> None:
    if not isinstance(account_id, str) or not account_id:
        raise ValueError("account_id must be a non-empty string")
    if snapshot_at.tzinfo is None:
        raise ValueError("snapshot_at must be timezone-aware")
    # A key httpx cannot send as-is would be echoed in h11's "Illegal header value" error.
    if not isinstance(api_key, str) or not _TOKEN_RE.fullmatch(api_key):
        raise ConfigError(f"account {account_id!r}: the API key is empty or has characters an HTTP header cannot carry")


def _utc_now() -> datetime:
    return datetime.now(UTC)
