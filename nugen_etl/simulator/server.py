"""The simulator's HTTP front: a threaded stdlib server answering ``GET /api/v3/models/aligned``."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from nugen_etl.simulator.faults import VALIDATION_DETAIL, Fault, detail_body
from nugen_etl.simulator.state import SimulatorState

API_PATH = "/api/v3/models/aligned"
_TRUNCATED_FALLBACK = b'{"domain_aligned_models":[{"id":"alignment-0000000000","name":"x"}]}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, deadline) while a slow answer was on its way is not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nugen-api-simulator"
    sys_version = ""
    timeout = 120
    # Without TCP_NODELAY the body's write waits for the ACK of the headers' write, which the
    # client delays by ~40 ms (Nagle and delayed ACK): every answer would take 40 ms longer.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging (it would also be the only place a header could leak)."""

    def do_GET(self) -> None:
        state = self.server.state
        state.log_path(self.path)
        self._drain_body()
        if state.latency_ms:
            time.sleep(state.latency_ms / 1000)
        if urlsplit(self.path).path != API_PATH:
            state.count_request(None)
            return self._send(404, detail_body("Not Found"))
        authorization = self.headers.get("Authorization")
        if authorization is None:
            state.count_request(None)
            return self._send(422, detail_body(VALIDATION_DETAIL))
        scheme, _, key = authorization.partition(" ")
        account_id = state.account_for_key(key.strip()) if scheme.lower() == "bearer" else None
        state.count_request(account_id)
        if account_id is None:
            return self._send(401, detail_body("Invalid API key"))
        fault = state.next_fault(account_id)
        if fault is not None and fault.kind != "slow":
            return self._send_fault(fault, account_id)
        if fault is not None:
            time.sleep(fault.delay)
        now = state.now()
        if not state.specs(account_id):
            return self._send(404, detail_body("No aligned models found"))
        self._send(200, state.body_at(account_id, now))

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)

    def _send_fault(self, fault: Fault, account_id: str) -> None:
        if fault.kind == "reset":
            self.close_connection = True
            return
        if fault.kind in ("truncated", "stall"):
            state = self.server.state
            full = state.body_at(account_id, state.now()) if state.specs(account_id) else _TRUNCATED_FALLBACK
            self._send(200, full[: len(full) // 2], length=len(full))
            if fault.kind == "stall":
                time.sleep(fault.delay)
            self.close_connection = True
            return
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        self._send(fault.code, fault.payload or b"", content_type=fault.content_type, headers=headers)

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


@dataclass(frozen=True)
class RunningServer:
    """A simulator serving in a background thread; ``base_url`` is what a client should be given."""

    host: str
    port: int
    state: SimulatorState

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve(state: SimulatorState, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
    """Serve ``state`` over real HTTP until the block exits; ``port=0`` picks a free port."""
    httpd = _Server((host, port), state)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="nugen-api-simulator", daemon=True)
    thread.start()
    try:
        yield RunningServer(host=host, port=httpd.server_address[1], state=state)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def run_forever(state: SimulatorState, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve in the foreground until Ctrl-C, after printing the URL and one ``account_id  api_key`` line each."""
    httpd = _Server((host, port), state)
    print(f"nugen-api simulator listening on http://{host}:{httpd.server_address[1]}", flush=True)
    for account_id in state.account_ids:
        print(f"{account_id}  {state.api_key(account_id)}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
