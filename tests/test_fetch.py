"""ApiClient against a mock transport: retries, Retry-After, deadline, body cap, headers, no key leaks."""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from nugen_etl import __version__
from nugen_etl.errors import ConfigError
from nugen_etl.fetch import ApiClient, RetryPolicy, parse_retry_after
from nugen_etl.records import RawAnswer

KEY = "sk-live-S3CRET-4f1c9a7e2b"
BASE = "https://api.example.test/"
SNAP = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
SEED = 1234
MODELS = json.dumps({"domain_aligned_models": []}).encode()

Step = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """Monotonic time that only moves when the code sleeps or a step says time passed."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class Script:
    """A mock-transport handler playing one step per request; the last step repeats."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        return step(request)


class ChunkStream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterable[bytes], *, then: Exception | None = None, each: Callable[[], None] = lambda: None) -> None:
        self.chunks = chunks
        self.then = then
        self.each = each
        self.served = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.each()
            self.served += 1
            yield chunk
        if self.then is not None:
            raise self.then


def reply(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, clock: FakeClock | None = None, takes: float = 0.0
) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        if clock is not None:
            clock.t += takes
        return httpx.Response(status, content=body, headers=headers)

    return step


def fail(exc_type: type[httpx.RequestError], message: str = "boom") -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return step


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test runs with httpx, httpcore and nugen_etl at DEBUG; no record may hold the key."""
    for name in ("httpx", "httpcore", "nugen_etl"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    for record in caplog.get_records("call"):  # caplog.records would be the (empty) teardown phase
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''} {record.stack_info or ''}"
        assert KEY not in text, record


def make_client(script: Script, clock: FakeClock, **kwargs: object) -> ApiClient:
    options: dict[str, object] = dict(
        transport=httpx.MockTransport(script), sleep=clock.sleep, monotonic=clock.monotonic, rng=random.Random(SEED), now=lambda: NOW
    )
    options.update(kwargs)
    return ApiClient(BASE, **options)  # type: ignore[arg-type]


def fetch(client: ApiClient, account_id: str = "acct-1", api_key: str = KEY) -> RawAnswer:
    answer = client.fetch_account(account_id, api_key, snapshot_at=SNAP)
    assert api_key not in repr(answer)
    assert api_key.encode() not in answer.body
    return answer


# --- success and the request we send -------------------------------------------------------


def test_200_returns_body_as_received_with_metadata(clock: FakeClock) -> None:
    script = Script(reply(200, MODELS, {"content-type": "application/json"}))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert answer == RawAnswer(
        account_id="acct-1",
        snapshot_at=SNAP,
        fetched_at=NOW,
        http_status=200,
        body=MODELS,
        headers={"content-type": "application/json"},
        attempts=1,
        error=None,
    )
    assert clock.sleeps == []


def test_request_carries_bearer_key_accept_and_user_agent(clock: FakeClock) -> None:
    script = Script(reply(200, MODELS))
    with make_client(script, clock) as client:
        fetch(client)
    (request,) = script.requests
    assert request.method == "GET"
    assert str(request.url) == "https://api.example.test/api/v3/models/aligned"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == f"nugen-etl/{__version__}"


def test_fetched_at_is_timezone_aware_utc_by_default(clock: FakeClock) -> None:
    before = datetime.now(UTC)
    with make_client(Script(reply(200, MODELS)), clock, now=None) as client:
        answer = fetch(client)
    assert answer.fetched_at.utcoffset() == timedelta(0)
    assert before <= answer.fetched_at <= datetime.now(UTC)


# --- Retry-After and backoff --------------------------------------------------------------


def test_429_with_retry_after_seconds_then_200(clock: FakeClock) -> None:
    script = Script(reply(429, b"slow down", {"retry-after": "2"}), reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.error, answer.body) == (200, 2, None, MODELS)
    assert clock.sleeps == [2.0]


def test_429_with_retry_after_http_date_is_measured_from_the_answers_date(clock: FakeClock) -> None:
    headers = {"date": "Wed, 01 May 2024 11:00:00 GMT", "retry-after": "Wed, 01 May 2024 11:00:07 GMT"}
    script = Script(reply(429, headers=headers), reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts) == (200, 2)
    assert clock.sleeps == [7.0]


def test_retry_after_http_date_without_date_header_uses_now(clock: FakeClock) -> None:
    script = Script(reply(503, headers={"retry-after": "Wed, 01 May 2024 12:00:08 GMT"}), reply(200))
    with make_client(script, clock) as client:
        fetch(client)
    assert clock.sleeps == [3.0]  # NOW is 12:00:05


def test_retry_after_in_the_past_means_no_wait(clock: FakeClock) -> None:
    script = Script(reply(429, headers={"retry-after": "Wed, 01 May 2024 11:00:00 GMT"}), reply(200))
    with make_client(script, clock) as client:
        assert fetch(client).attempts == 2
    assert clock.sleeps == [0.0]


def test_retry_after_is_capped(clock: FakeClock) -> None:
    script = Script(reply(429, headers={"retry-after": "3600"}), reply(200, MODELS))
    policy = RetryPolicy(retry_after_cap_s=60, deadline_s=600)
    with make_client(script, clock, retry=policy) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts) == (200, 2)
    assert clock.sleeps == [60.0]


def test_429_without_retry_after_uses_full_jitter(clock: FakeClock) -> None:
    script = Script(reply(429), reply(429), reply(429), reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts) == (200, 4)
    expected_rng = random.Random(SEED)
    assert clock.sleeps == [expected_rng.uniform(0, 0.5 * 2**i) for i in range(3)]
    assert all(0 <= s <= 0.5 * 2**i for i, s in enumerate(clock.sleeps))


def test_unparseable_retry_after_falls_back_to_jitter(clock: FakeClock) -> None:
    script = Script(reply(503, headers={"retry-after": "later, maybe"}), reply(200))
    with make_client(script, clock) as client:
        fetch(client)
    assert clock.sleeps == [random.Random(SEED).uniform(0, 0.5)]


def test_jitter_never_exceeds_max_delay(clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=6, base_delay_s=10, max_delay_s=15, deadline_s=1000)
    with make_client(Script(reply(502)), clock, retry=policy, rng=random.Random(7)) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.error) == (502, 6, "HTTP 502 after 6 attempts")
    assert len(clock.sleeps) == 5
    expected_rng = random.Random(7)
    assert clock.sleeps == [expected_rng.uniform(0, min(15, 10 * 2**i)) for i in range(5)]


# --- which statuses are retried -----------------------------------------------------------


@pytest.mark.parametrize("statuses", [(503, 503, 200), (500, 200), (502, 200), (504, 200)])
def test_server_errors_are_retried_until_success(clock: FakeClock, statuses: tuple[int, ...]) -> None:
    script = Script(*(reply(status, b"nope" if status != 200 else MODELS) for status in statuses))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.error, answer.body) == (200, len(statuses), None, MODELS)
    assert len(clock.sleeps) == len(statuses) - 1


@pytest.mark.parametrize(
    "status, body",
    [
        (400, b'{"detail": "Bad request"}'),
        (401, b'{"detail": "Invalid API key"}'),
        (403, b'{"detail": "Forbidden"}'),
        (404, b'{"detail": "No aligned models found"}'),
        (422, b'{"detail": [{"loc": ["header", "Authorization"], "msg": "field required"}]}'),
    ],
)
def test_client_errors_are_returned_as_is_and_never_retried(clock: FakeClock, status: int, body: bytes) -> None:
    script = Script(reply(status, body, {"content-type": "application/json"}), reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.error, answer.body) == (status, 1, None, body)
    assert len(script.requests) == 1
    assert clock.sleeps == []


def test_redirect_is_not_followed(clock: FakeClock) -> None:
    script = Script(reply(302, headers={"location": "https://elsewhere.test/steal"}), reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts) == (302, 1)
    assert answer.error == "HTTP 302: redirects are not followed"
    assert [str(r.url) for r in script.requests] == ["https://api.example.test/api/v3/models/aligned"]


def test_other_5xx_is_not_retried_but_flagged(clock: FakeClock) -> None:
    script = Script(reply(501), reply(200))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.error) == (501, 1, "HTTP 501 is not retried")


def test_permanent_503_exhausts_attempts(clock: FakeClock) -> None:
    script = Script(reply(503, b"maintenance"))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.body) == (503, 5, b"maintenance")
    assert answer.error == "HTTP 503 after 5 attempts"
    assert len(script.requests) == 5 and len(clock.sleeps) == 4


# --- transport failures -------------------------------------------------------------------


def test_timeout_every_time(clock: FakeClock) -> None:
    script = Script(fail(httpx.ReadTimeout, "The read operation timed out"))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.body, answer.attempts) == (None, b"", 5)
    assert answer.error == "timed out after 5 attempts: ReadTimeout"
    assert len(clock.sleeps) == 4


def test_connect_error_then_success(clock: FakeClock) -> None:
    script = Script(fail(httpx.ConnectError, "[Errno 111] Connection refused"), reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.error) == (200, 2, None)


def test_transport_error_text_is_redacted(clock: FakeClock) -> None:
    script = Script(fail(httpx.ConnectError, f"proxy said: Authorization: Bearer {KEY} refused ({KEY})"))
    with make_client(script, clock, retry=RetryPolicy(max_attempts=2)) as client:
        answer = fetch(client)
    assert answer.error is not None and answer.error.startswith("transport error after 2 attempts: ConnectError:")
    assert "***" in answer.error


def test_truncated_body_is_a_failed_attempt_and_retried(clock: FakeClock) -> None:
    def truncated(request: httpx.Request) -> httpx.Response:
        cut = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        return httpx.Response(200, headers={"content-length": "100"}, stream=ChunkStream([b'{"domain_aligned'], then=cut))

    script = Script(truncated, reply(200, MODELS))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts, answer.body, answer.error) == (200, 2, MODELS, None)


def test_reset_connection_raised_by_transport_is_retried(clock: FakeClock) -> None:
    script = Script(fail(httpx.RemoteProtocolError, "Server disconnected"), reply(200, MODELS))
    with make_client(script, clock) as client:
        assert fetch(client).attempts == 2


def test_truncated_every_time_ends_as_transport_error(clock: FakeClock) -> None:
    script = Script(fail(httpx.RemoteProtocolError, "Server disconnected"))
    with make_client(script, clock, retry=RetryPolicy(max_attempts=3)) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts) == (None, 3)
    assert answer.error == "transport error after 3 attempts: RemoteProtocolError: Server disconnected"


# --- deadline -----------------------------------------------------------------------------


def test_deadline_stops_retries_early(clock: FakeClock) -> None:
    script = Script(reply(503, b"busy", {"retry-after": "4"}, clock=clock, takes=1.0))
    policy = RetryPolicy(max_attempts=10, deadline_s=10)
    with make_client(script, clock, retry=policy) as client:
        answer = fetch(client)
    # t=1 first answer, sleep 4, t=6 second answer: 4 s of sleep + a minimal attempt no longer fit.
    assert (answer.http_status, answer.attempts, answer.body) == (503, 2, b"busy")
    assert answer.error == "deadline of 10s exhausted after 2 attempts (last: HTTP 503)"
    assert clock.sleeps == [4.0]


def test_attempt_timeout_shrinks_to_the_remaining_deadline(clock: FakeClock) -> None:
    seen: list[float] = []

    def step(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        clock.t += 3.0
        return httpx.Response(503, headers={"retry-after": "1"})

    policy = RetryPolicy(max_attempts=3, deadline_s=20)
    with make_client(Script(step), clock, retry=policy, timeout_s=15) as client:
        answer = fetch(client)
    assert seen == [15.0, 15.0, 12.0]  # min(15, 20), min(15, 20-4), min(15, 20-8)
    assert answer.error == "HTTP 503 after 3 attempts"


def test_answer_slower_than_the_deadline_is_a_timeout(clock: FakeClock) -> None:
    script = Script(reply(200, MODELS, clock=clock, takes=121.0))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.body, answer.attempts) == (None, b"", 1)
    assert answer.error == "timed out after 1 attempt: no complete answer within the 120s deadline"


def test_body_trickling_past_the_deadline_is_cut_off(clock: FakeClock) -> None:
    def tick() -> None:
        clock.t += 1.0

    stream = ChunkStream(itertools.repeat(b"x"), each=tick)
    script = Script(lambda request: httpx.Response(200, stream=stream))
    with make_client(script, clock, retry=RetryPolicy(deadline_s=30)) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.attempts) == (None, 1)
    assert answer.error is not None and answer.error.startswith("timed out after 1 attempt")
    assert stream.served == 31


def test_timeouts_until_the_deadline(clock: FakeClock) -> None:
    def step(request: httpx.Request) -> httpx.Response:
        clock.t += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("timed out", request=request)

    policy = RetryPolicy(max_attempts=10, deadline_s=60)
    with make_client(Script(step), clock, retry=policy, timeout_s=25) as client:
        answer = fetch(client)
    assert answer.http_status is None
    assert answer.error == f"deadline of 60s exhausted after {answer.attempts} attempts (last: ReadTimeout)"
    assert answer.attempts < 10
    assert clock.t - 1000.0 <= 60.0


# --- body cap -----------------------------------------------------------------------------


def test_body_over_the_cap_by_content_length_is_refused(clock: FakeClock) -> None:
    script = Script(reply(200, b"x" * 11), reply(200, b"ok"))
    with make_client(script, clock, max_body_bytes=10) as client:
        answer = fetch(client)
    assert (answer.http_status, answer.body, answer.attempts) == (200, b"", 1)
    assert answer.error == "response body exceeds 10 bytes"


def test_endless_body_is_cut_at_the_cap_without_reading_it_all(clock: FakeClock) -> None:
    stream = ChunkStream(itertools.repeat(b"x" * 1024))
    script = Script(lambda request: httpx.Response(200, stream=stream))
    with make_client(script, clock, max_body_bytes=64 * 1024) as client:
        answer = fetch(client)
    assert answer.error == "response body exceeds 65536 bytes"
    assert answer.body == b""
    assert stream.served == 65


def test_body_exactly_at_the_cap_is_kept(clock: FakeClock) -> None:
    with make_client(Script(reply(200, b"x" * 10)), clock, max_body_bytes=10) as client:
        answer = fetch(client)
    assert (answer.body, answer.error) == (b"x" * 10, None)


# --- headers, cookies, secrets ------------------------------------------------------------


def test_only_useful_headers_are_kept_lower_cased(clock: FakeClock) -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("Date", "Wed, 01 May 2024 12:00:00 GMT"),
        ("X-Request-ID", "req-1"),
        ("ETag", '"abc"'),
        ("X-RateLimit-Remaining", "99"),
        ("X-RateLimit-Reset", "30"),
        ("Set-Cookie", "session=zzz"),
        ("Authorization", "Bearer x"),
        ("Server", "nginx"),
        ("Via", "1.1 proxy"),
    ]

    def step(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MODELS, headers=headers)

    with make_client(Script(step), clock) as client:
        answer = fetch(client)
    assert answer.headers == {
        "content-type": "application/json",
        "date": "Wed, 01 May 2024 12:00:00 GMT",
        "x-request-id": "req-1",
        "etag": '"abc"',
        "x-ratelimit-remaining": "99",
        "x-ratelimit-reset": "30",
    }


def test_key_echoed_by_the_server_in_a_kept_header_is_masked(clock: FakeClock) -> None:
    script = Script(reply(401, b"{}", {"x-request-id": f"req-{KEY}"}))
    with make_client(script, clock) as client:
        answer = fetch(client)
    assert answer.headers == {"x-request-id": "req-***"}


def test_cookies_never_travel_between_accounts(clock: FakeClock) -> None:
    script = Script(reply(200, MODELS, {"set-cookie": "session=acct-1-only; Path=/"}), reply(200, MODELS))
    with make_client(script, clock) as client:
        fetch(client, "acct-1")
        fetch(client, "acct-2")
    assert "cookie" not in script.requests[1].headers


def test_concurrent_fetches_each_send_their_own_key(clock: FakeClock) -> None:
    def echo_key(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=request.headers["authorization"].encode()[-6:])

    keys = {f"acct-{i}": f"key-{i:06d}" for i in range(40)}
    with make_client(Script(echo_key), clock, max_concurrency=8) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda item: client.fetch_account(item[0], item[1], snapshot_at=SNAP), keys.items()))
    assert {a.account_id: a.body.decode() for a in answers} == {acct: key[-6:] for acct, key in keys.items()}


def test_repr_shows_only_the_base_url(clock: FakeClock) -> None:
    with make_client(Script(reply(200)), clock) as client:
        fetch(client)
        assert repr(client) == "ApiClient(base_url='https://api.example.test')"


def test_logs_every_attempt_and_warns_on_retries_and_failures(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with make_client(Script(reply(503)), clock, retry=RetryPolicy(max_attempts=2)) as client:
        fetch(client, "acct-9")
    ours = [r for r in caplog.records if r.name == "nugen_etl.fetch"]
    assert [r.levelname for r in ours] == ["DEBUG", "WARNING", "DEBUG", "WARNING"]
    assert all("acct-9" in r.getMessage() for r in ours)
    assert ours[-1].getMessage() == "account acct-9: HTTP 503 after 2 attempts"


# --- bad arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("bad_key", ["", f"{KEY}\n", f"{KEY} extra", f"{KEY}é"])
def test_unusable_key_raises_without_showing_it(clock: FakeClock, bad_key: str) -> None:
    script = Script(reply(200))
    with make_client(script, clock) as client, pytest.raises(ConfigError) as caught:
        client.fetch_account("acct-1", bad_key, snapshot_at=SNAP)
    assert KEY not in str(caught.value)
    assert script.requests == []


@pytest.mark.parametrize("base_url", ["api.nugen.in", "ftp://api.nugen.in", "https://user:pw@api.nugen.in"])
def test_bad_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError):
        ApiClient(base_url)


def test_naive_snapshot_is_refused(clock: FakeClock) -> None:
    with make_client(Script(reply(200)), clock) as client, pytest.raises(ValueError):
        client.fetch_account("acct-1", KEY, snapshot_at=SNAP.replace(tzinfo=None))


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(deadline_s=0)


@pytest.mark.parametrize(
    "value, expected", [("0", 0.0), ("  5 ", 5.0), ("-3", 0.0), ("1.5", 1.5), ("nan", None), ("", None), ("tomorrow", None)]
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == expected


# --- a real loopback server: the httpcore debug logs never show the key ---------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    calls = 0
    seen_auth: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        type(self).calls += 1
        type(self).seen_auth.append(self.headers.get("Authorization", ""))
        status, body = (503, b"busy") if type(self).calls == 1 else (200, MODELS)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "s=1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_loopback_server_with_debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with ApiClient(base, timeout_s=5, sleep=lambda s: None) as client:
            answer = client.fetch_account("acct-1", KEY, snapshot_at=SNAP)
    finally:
        server.shutdown()
        server.server_close()
    assert (answer.http_status, answer.attempts, answer.body, answer.error) == (200, 2, MODELS, None)
    assert _Handler.seen_auth == [f"Bearer {KEY}"] * 2
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # the leak check saw real traffic
    assert "set-cookie" not in answer.headers
