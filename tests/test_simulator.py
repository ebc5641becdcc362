"""The API simulator: deterministic payloads, the documented error answers, faults and counting, over real HTTP."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from nugen_etl.simulator import API_PATH, Fault, SimulatorState, serve

START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
ACCOUNT = "acct-0001"


@pytest.fixture
def state() -> SimulatorState:
    s = SimulatorState(seed=7, accounts=5, models=5, start=START)
    s.set_time(START + 30 * timedelta(minutes=1))
    return s


@pytest.fixture
def client(state: SimulatorState) -> Iterator[httpx.Client]:
    with serve(state) as server, httpx.Client(base_url=server.base_url, timeout=5) as c:
        yield c


def get(client: httpx.Client, state: SimulatorState, account_id: str = ACCOUNT) -> httpx.Response:
    return client.get(API_PATH, headers={"Authorization": f"Bearer {state.api_key(account_id)}"})


def test_accounts_keys_and_empty_account(state: SimulatorState) -> None:
    assert state.account_ids == [f"acct-{n:04d}" for n in range(1, 6)]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", a) for a in state.account_ids)
    assert state.empty_account_id == "acct-0005"
    assert len({state.api_key(a) for a in state.account_ids}) == 5
    assert SimulatorState(seed=8, accounts=5).api_key(ACCOUNT) != state.api_key(ACCOUNT)
    assert SimulatorState(seed=1, accounts=2).empty_account_id is None


def test_payload_is_a_function_of_seed_account_and_hour(state: SimulatorState) -> None:
    t = START + 4 * HOUR
    same = SimulatorState(seed=7, accounts=5, models=5, start=START)
    other = SimulatorState(seed=8, accounts=5, models=5, start=START)
    assert state.models_at(ACCOUNT, t) == same.models_at(ACCOUNT, t)
    assert state.models_at(ACCOUNT, t) != other.models_at(ACCOUNT, t)
    assert state.models_at(ACCOUNT, t) != state.models_at("acct-0002", t)
    assert state.models_at(ACCOUNT, t) == state.models_at(ACCOUNT, t + 59 * timedelta(minutes=1))


def test_server_serves_exactly_models_at(state: SimulatorState, client: httpx.Client) -> None:
    for hours in (0, 5, 2):
        state.set_time(START + hours * HOUR + timedelta(minutes=10))
        response = get(client, state)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["date"] and response.headers["x-request-id"]
        assert response.json() == {"domain_aligned_models": state.models_at(ACCOUNT, state.now())}


def test_usage_grows_hourly_and_model_2_resets_at_reset_at(state: SimulatorState) -> None:
    reset_at = state.reset_at(ACCOUNT, 2)
    assert reset_at is not None and reset_at > START and state.reset_at(ACCOUNT, 0) is None
    hours = [START + h * HOUR for h in range(12)]
    model0 = [state.usage_at(ACCOUNT, 0, t) for t in hours]
    assert all(b > a for a, b in zip(model0, model0[1:], strict=False))
    before, after = state.usage_at(ACCOUNT, 2, reset_at - HOUR), state.usage_at(ACCOUNT, 2, reset_at)
    assert 1 <= after <= 5 < before
    assert state.usage_at(ACCOUNT, 2, reset_at + HOUR) > after
    served = {m["alignment_id"]: m["usage_count"] for m in state.models_at(ACCOUNT, reset_at)}
    assert served[state.models_at(ACCOUNT, START)[2]["alignment_id"]] == after


def test_deploy_changes_id_but_keeps_alignment_id(state: SimulatorState, client: httpx.Client) -> None:
    deploy_at = state.deploy_at(ACCOUNT, 1)
    assert deploy_at is not None and deploy_at >= START + HOUR and state.deploy_at(ACCOUNT, 0) is None
    seen = []
    for t in (deploy_at - 2 * HOUR, deploy_at - HOUR, deploy_at):
        state.set_time(t)
        seen.append(get(client, state).json()["domain_aligned_models"][1])
    assert [m["status"] for m in seen] == ["READY", "DEPLOYING", "DEPLOYED"]
    assert len({m["alignment_id"] for m in seen}) == 1
    assert [m["id"] for m in seen] == [seen[0]["alignment_id"]] * 2 + [seen[0]["alignment_id"] + "-deployed"]
    assert [m["endpoint"] for m in seen[:2]] == ["", ""] and seen[2]["endpoint"].endswith("-deployed")
    assert [m["usage_count"] for m in seen] == [0, 0, state.usage_at(ACCOUNT, 1, deploy_at)]


def test_payload_carries_both_documented_shapes(state: SimulatorState) -> None:
    t = START + 3 * HOUR
    models = state.models_at(ACCOUNT, t)
    assert len(models) == 5
    assert set(models[0]["performance_metrics"]) == {"accuracy", "uncertainty", "domain_violations", "average_response_time"}
    assert set(models[1]["performance_metrics"]) == {
        "accuracy_before",
        "accuracy_after",
        "uncertainty_before",
        "uncertainty_after",
        "domain_violations_before",
        "domain_violations_after",
    }
    assert models[0]["evaluation_data"]["metrics"]["overall_score"] == models[0]["evaluation_data"]["metrics"]["accuracy"]
    assert set(models[1]["evaluation_data"]) == {"accuracy", "total_questions"}
    assert models[2]["evaluation_data"] is None
    assert models[4]["alignment_id"] is None and models[4]["id"].startswith("aligned-model-")
    for m in models:
        assert (m["last_used"] is None) == (m["usage_count"] == 0)
        assert m["last_used"] is None or m["last_used"] <= t.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert m["created_date"].endswith("Z") and m["base_model"] == "nugen-flash-instruct"
        accuracy = m["performance_metrics"].get("accuracy", m["performance_metrics"].get("accuracy_after"))
        assert 0 <= accuracy <= 1


def test_documented_error_answers(state: SimulatorState, client: httpx.Client) -> None:
    assert client.get(API_PATH).status_code == 422
    assert client.get(API_PATH).json()["detail"] == [
        {"loc": ["header", "Authorization"], "msg": "field required", "type": "value_error.missing"}
    ]
    bad = client.get(API_PATH, headers={"Authorization": "Bearer sk-sim-nope"})
    assert (bad.status_code, bad.json()) == (401, {"detail": "Invalid API key"})
    basic = client.get(API_PATH, headers={"Authorization": f"Basic {state.api_key(ACCOUNT)}"})
    assert basic.status_code == 401
    empty = get(client, state, "acct-0005")
    assert (empty.status_code, empty.json()) == (404, {"detail": "No aligned models found"})
    wrong = client.get("/api/v3/models", headers={"Authorization": f"Bearer {state.api_key(ACCOUNT)}"})
    assert (wrong.status_code, wrong.json()) == (404, {"detail": "Not Found"})


def test_status_faults_then_normal_answer(state: SimulatorState, client: httpx.Client) -> None:
    state.inject(
        ACCOUNT,
        [
            Fault.status(429, retry_after="1"),
            Fault.status(503),
            Fault.status(404, body=b"<html>nginx</html>"),
            Fault.status(400),
            Fault.body(b"[1, 2]"),
        ],
    )
    too_many = get(client, state)
    assert too_many.status_code == 429 and too_many.headers["retry-after"] == "1"
    assert get(client, state, "acct-0002").status_code == 200
    assert get(client, state).status_code == 503
    html = get(client, state)
    assert html.status_code == 404 and html.headers["content-type"].startswith("text/html")
    assert get(client, state).json() == {"detail": "Bad request"}
    assert get(client, state).json() == [1, 2]
    assert get(client, state).status_code == 200


def test_malformed_slow_truncated_and_reset_faults(state: SimulatorState, client: httpx.Client) -> None:
    state.inject(ACCOUNT, [Fault.malformed(), Fault.slow(0.3), Fault.truncated(), Fault.reset()])
    malformed = get(client, state)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    began = time.monotonic()
    assert get(client, state).status_code == 200
    assert time.monotonic() - began >= 0.3
    with pytest.raises(httpx.RemoteProtocolError):
        get(client, state)
    with pytest.raises(httpx.TransportError):
        get(client, state)
    assert get(client, state).status_code == 200


def test_request_counts(state: SimulatorState, client: httpx.Client) -> None:
    get(client, state)
    get(client, state)
    get(client, state, "acct-0002")
    client.get(API_PATH)
    assert (state.request_count(), state.request_count(ACCOUNT), state.request_count("acct-0002")) == (4, 2, 1)
    state.reset_counts()
    assert state.request_count() == 0


def test_fault_rate_and_latency() -> None:
    state = SimulatorState(seed=3, accounts=3, models=2, start=START, fault_rate=1.0, latency_ms=50)
    with serve(state) as server, httpx.Client(base_url=server.base_url) as c:
        began = time.monotonic()
        codes = {get(c, state).status_code for _ in range(8)}
        assert time.monotonic() - began >= 8 * 0.05
    assert codes <= {429, 503} and codes


def test_concurrent_keep_alive_clients(state: SimulatorState) -> None:
    limits = httpx.Limits(max_connections=48, max_keepalive_connections=48)
    with serve(state) as server, httpx.Client(base_url=server.base_url, limits=limits, timeout=5) as c:
        with ThreadPoolExecutor(48) as pool:
            codes = list(pool.map(lambda n: get(c, state, state.account_ids[n % 4]).status_code, range(480)))
    assert codes == [200] * 480
    assert state.request_count() == 480


def test_answers_are_sent_without_nagle_delay(state: SimulatorState, monkeypatch) -> None:
    """Headers and body go out in two writes; with Nagle on, the body waits ~40 ms for the
    client's delayed ACK of the headers, which would add 40 ms to every simulated answer."""
    from nugen_etl.simulator import server as server_module

    seen: list[int] = []
    handle = server_module._Handler.handle

    def recording_handle(self) -> None:
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        handle(self)

    monkeypatch.setattr(server_module._Handler, "handle", recording_handle)
    with serve(state) as server, httpx.Client(base_url=server.base_url, timeout=5) as c:
        assert get(c, state).status_code == 200
    assert seen and all(seen)
