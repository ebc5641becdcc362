"""Object storage: the raw archive and the Delta tables on an S3-compatible server on loopback (moto's
server, in a process of its own). Same keys, same rows, same warehouse views and the same guarantees
as the local folder: one PUT per raw object under its final key; each lake write is one Delta commit
per table made by a conditional PUT (put-if-absent, no DynamoDB), so concurrent writers of one slot
never lose or double a commit; reruns replace rows; readers only ever see committed versions; and
credentials never reach a log, an error or a repr.

Dummy AWS credentials are set for the whole module and every client is pointed at loopback; the
AWS default endpoint is redirected to a dead loopback port, so nothing can reach the real AWS.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from botocore.config import Config as BotoConfig
from deltalake import DeltaTable

from nugen_etl.config import Config, S3Config, parse_config
from nugen_etl.errors import ConfigError
from nugen_etl.pipeline import backfill, open_configured_storage, run_snapshot
from nugen_etl.records import RawAnswer, SlotLoad
from nugen_etl.redaction import Secret
from nugen_etl.schemas import MODEL_SNAPSHOTS
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.sinks.archive import list_archived_slots, read_raw_answer, write_raw_answer
from nugen_etl.sinks.lake import LAKE_TABLES, CommitRetry, LakeError, open_lake
from nugen_etl.storage import AwsCredentials, LocalStorage, S3Storage, Storage, StorageError
from nugen_etl.transform import answer_to_load

from .e2e_helpers import FETCH_OFFSET, SLOTS, T0, environ_for, make_config
from .state_helpers import sorted_rows
from .test_end_to_end import views

BUCKET = "nugen-test"
REGION = "us-east-1"
KEY_ID = "AKIANUGENTESTDUMMY01"
SECRET = "nugen-dummy-secret-0f9e8d7c6b5a"
TOKEN = "nugen-dummy-session-token-1a2b3c"
FAILING = "acct-0002"
SLOT = datetime(2026, 3, 1, 5, tzinfo=UTC)
TABLES = [spec.name for spec in LAKE_TABLES]
RAW_KEY_RE = re.compile(
    r"raw/account_id=[^/]+/snapshot_date=\d{4}-\d{2}-\d{2}/"
    r"\d{8}T\d{6}Z__\d{8}T\d{12}Z__[0-9a-f]{8}\.raw\.gz"
)
# A Delta table: its log entries, and data files in day partitions (never an account folder).
DELTA_KEY_RE = re.compile(
    r"(?P<table>model_snapshots|model_metrics|account_runs)/"
    r"(?:_delta_log/(?P<version>\d{20})\.json|snapshot_date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet"
    r"|_delta_log/\d{20}\.checkpoint\.parquet|_delta_log/_last_checkpoint)"
)
MOTO_START_S = 60
RECORDING = "recording.jsonl"


# --- the moto server, in its own process ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m moto.server`` on a free loopback port, once it accepts connections. Its request
    recorder (off until a test starts it) writes to ``folder/recording.jsonl``."""
    log_path = folder / "moto.log"
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(folder / RECORDING)}
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + MOTO_START_S
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.1)
        stop_moto(proc)
    raise RuntimeError(f"the moto server did not start: {log_path.read_text(errors='replace')[-2000:]}")


def stop_moto(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server process on loopback with the module's bucket; dummy credentials in the
    environment (inherited by the writer processes the tests spawn)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_SESSION_TOKEN", TOKEN)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/nugen-test-aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/nugen-test-aws-credentials")
        mp.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a client without an override fails on loopback
        proc, url = start_moto(tmp_path_factory.mktemp("moto"))
        try:
            admin_client(url).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            stop_moto(proc)


def recorded_requests(url: str, action: Any) -> list[dict[str, Any]]:
    """The requests the moto server received while ``action()`` ran (moto's own request recorder)."""

    def call(verb: str, method: str = "POST") -> bytes:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/recorder/{verb}", method=method), timeout=30) as answer:
            return answer.read()

    call("reset-recording")
    call("start-recording")
    try:
        action()
    finally:
        call("stop-recording")
    return [json.loads(line) for line in call("download-recording", "GET").decode().splitlines() if line]


def admin_client(url: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=url, region_name=REGION, config=BotoConfig(s3={"addressing_style": "path"}))


def object_keys(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every object under ``prefix/``: storage key -> its listing entry."""
    out = {}
    for page in admin_client(url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        out.update({o["Key"][len(prefix) + 1 :]: o for o in page.get("Contents", [])})
    return out


@pytest.fixture
def prefix() -> str:
    return f"unit/{uuid.uuid4().hex[:10]}"


def s3_storage(endpoint: str, prefix: str, **kw: Any) -> S3Storage:
    return S3Storage(BUCKET, prefix, endpoint_url=endpoint, region=REGION, **kw)


def raw(
    account: str = "acme", slot: datetime = SLOT, body: bytes = b'{"domain_aligned_models": []}', fetched: datetime | None = None
) -> RawAnswer:
    return RawAnswer(
        account_id=account,
        snapshot_at=slot,
        fetched_at=fetched or slot + timedelta(seconds=7),
        http_status=200,
        body=body,
        headers={"content-type": "application/json"},
        attempts=1,
    )


# --- lake helpers -------------------------------------------------------------------------------


def model_load(account: str, *, version: int, models: int, slot: datetime = SLOT) -> SlotLoad:
    """The load of an answer with ``models`` models whose usage_count is ``version * 1000 + i``
    (0 models: an ``empty`` answer), flattened as the pipeline does."""
    body = json.dumps(
        {
            "domain_aligned_models": [
                {
                    "id": f"model-{account}-{i}",
                    "alignment_id": f"alignment-{i}",
                    "name": f"model {i}",
                    "usage_count": version * 1000 + i,
                    "performance_metrics": {"accuracy": 0.5 + i / 1000},
                }
                for i in range(models)
            ]
        }
    ).encode()
    return answer_to_load(raw(account, slot, body=body))


def expected_usage(account: str, *, version: int, models: int) -> dict[tuple[str, str], int]:
    return {(account, f"model-{account}-{i}"): version * 1000 + i for i in range(models)}


def delta_table(storage: Storage, name: str) -> DeltaTable:
    """A table as any reader opens it: the storage's Delta URI and storage options."""
    root, options = storage.delta_location()
    return DeltaTable(f"{root}/{name}", storage_options=options or None)


def usage(storage: Storage, *, slot: datetime = SLOT) -> dict[tuple[str, str], int]:
    """(account, model_id) -> usage_count of model_snapshots in ``slot``; fails on a repeated key."""
    rows = (
        delta_table(storage, "model_snapshots")
        .to_pyarrow_table(filters=[("snapshot_at", "=", slot)], columns=["account_id", "model_id", "usage_count"])
        .to_pylist()
    )
    keyed = {(r["account_id"], r["model_id"]): r["usage_count"] for r in rows}
    assert len(keyed) == len(rows), "a row appears twice in the lake"
    return keyed


def lake_rows(storage: Storage) -> dict[str, list[tuple]]:
    """Every table's rows (sorted, without ``fetched_at``, which records when the API answered)."""
    out = {}
    for name in TABLES:
        out[name] = sorted_rows(delta_table(storage, name).to_pyarrow_table())
    return out


def committed_files(table: DeltaTable) -> set[str]:
    """The data files the table's current version references (paths relative to the table)."""
    return {unquote(p) for p in pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()}


def writes_by(storage: Storage, name: str) -> list[tuple[int, str | None]]:
    """(version, test.writer) of every WRITE commit of a table, oldest first."""
    history = delta_table(storage, name).history()
    return sorted((c["version"], c.get("test.writer")) for c in history if c["operation"] == "WRITE")


def contiguous(accounts: Sequence[str], parts: int) -> list[list[str]]:
    size = -(-len(accounts) // parts)
    return [list(accounts[i : i + size]) for i in range(0, len(accounts), size)]


# --- configuration -----------------------------------------------------------------------------


def storage_config(tmp_path: Path, **storage: Any) -> Config:
    data = {
        "storage": storage,
        "warehouse": {"url": f"duckdb:///{tmp_path / 'wh.duckdb'}"},
        "accounts": [{"id": "acme", "api_key_env": "K"}],
    }
    return parse_config(data, base_dir=tmp_path, environ={})


def test_config_accepts_an_s3_root_and_keeps_credentials_out(tmp_path: Path) -> None:
    cfg = storage_config(tmp_path, root="s3://nugen-lake/etl/prod/", endpoint_url="http://127.0.0.1:9000", region="eu-west-1")
    assert cfg.storage_root is None and cfg.storage_url == "s3://nugen-lake/etl/prod"
    assert cfg.s3 == S3Config(bucket="nugen-lake", prefix="etl/prod", endpoint_url="http://127.0.0.1:9000", region="eu-west-1")
    assert storage_config(tmp_path, root="s3://nugen-lake").s3 == S3Config(bucket="nugen-lake")
    local = storage_config(tmp_path, root="data")
    assert local.s3 is None and local.storage_root == (tmp_path / "data").resolve()

    bad = [
        ({"root": "s3://nugen-lake/x", "aws_secret_access_key": SECRET}, "credentials never sit in the file"),
        ({"root": "s3://nugen-lake/x", "endpoint_url": f"http://{KEY_ID}:{SECRET}@127.0.0.1:9000"}, "never sit in the URL"),
        ({"root": "s3://nugen-lake/a/../b"}, "invalid S3 prefix"),
        ({"root": "s3://nugen-lake//b"}, "invalid S3 prefix"),
        ({"root": "s3://Not_A_Bucket/x"}, "invalid S3 bucket"),
        ({"root": "gs://nugen-lake/x"}, "unsupported scheme"),
        ({"root": "data", "endpoint_url": "http://127.0.0.1:9000"}, "only applies when storage.root is an s3"),
        ({"root": "s3://nugen-lake", "region": "EU WEST"}, "storage.region"),
    ]
    for storage, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            storage_config(tmp_path, **storage)
        assert SECRET not in str(info.value) and KEY_ID not in str(info.value)
    with pytest.raises(ConfigError, match="warehouse.url: required"):
        parse_config(
            {"storage": {"root": "s3://nugen-lake/x"}, "accounts": [{"id": "a", "api_key_env": "K"}]}, base_dir=tmp_path, environ={}
        )


# --- the storage interface -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_keys_cannot_leave_the_root(backend: str, endpoint: str, prefix: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root", fsync=False) if backend == "local" else s3_storage(endpoint, prefix)
    for key in ["../escape", "raw/../../escape", "/etc/passwd", "raw//x", "raw/./x", "raw\\..\\x", ""]:
        for attempt in (
            lambda: storage.write_bytes_atomic(key, b"x"),
            lambda: storage.read_bytes(key),
            lambda: storage.delete(key),
            lambda: storage.listdir(key),
        ):
            with pytest.raises(ValueError, match="unsafe storage key"):
                attempt()
    assert not list(tmp_path.rglob("*escape*")) and not object_keys(endpoint, prefix)
    assert not [k for k in object_keys(endpoint, "unit") if "escape" in k]


def test_raw_archive_on_s3_uses_the_local_keys_and_round_trips(endpoint: str, prefix: str, tmp_path: Path) -> None:
    storage = s3_storage(endpoint, prefix)
    body = b'{"x": "\xc3\xa9"}\n\x00\xff bytes as received'
    answers = [
        raw(fetched=SLOT + timedelta(seconds=1), body=body),
        raw(fetched=SLOT + timedelta(seconds=2)),
        raw(slot=SLOT + timedelta(hours=1)),
        raw(account="other", slot=SLOT + timedelta(days=3)),
    ]
    keys = [write_raw_answer(storage, a) for a in answers]
    paths = [write_raw_answer(tmp_path, a, fsync=False) for a in answers]
    assert all(RAW_KEY_RE.fullmatch(k) for k in keys)
    assert set(object_keys(endpoint, prefix)) == set(keys)
    assert [k.rsplit("/", 1)[0] for k in keys] == [str(p.parent.relative_to(tmp_path)) for p in paths]
    assert read_raw_answer(storage, keys[0]) == answers[0] == read_raw_answer(paths[0])

    start, end = SLOT, SLOT + timedelta(days=5)
    on_s3 = [(a, s, [k.rsplit("/", 1)[0] for k in ks]) for a, s, ks in list_archived_slots(storage, start=start, end=end)]
    local = [(a, s, [str(p.parent.relative_to(tmp_path)) for p in ps]) for a, s, ps in list_archived_slots(tmp_path, start=start, end=end)]
    assert on_s3 == local and [(a, s) for a, s, _ in on_s3] == [
        ("acme", SLOT),
        ("acme", SLOT + timedelta(hours=1)),
        ("other", SLOT + timedelta(days=3)),
    ]
    assert next(iter(list_archived_slots(storage, start=start, end=end)))[2] == keys[:2]  # oldest fetch first
    only_other = list(list_archived_slots(storage, start=SLOT, end=SLOT + timedelta(days=1), account_ids=["other"]))
    assert only_other == []


def test_each_raw_object_is_one_put_under_its_final_key(endpoint: str, prefix: str) -> None:
    """No multipart upload, no temporary key, no directory marker: one PutObject per object, even large."""
    client = admin_client(endpoint)
    calls: list[str] = []
    hosts: set[str] = set()
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    client.meta.events.register("before-send.s3", lambda request, **_: hosts.add(request.url.split("/")[2]))
    storage = s3_storage(endpoint, prefix, client=client)

    key = write_raw_answer(storage, raw())
    big = os.urandom(20 * 1024 * 1024)  # above any multipart threshold (boto3's transfer default is 8 MB)
    storage.write_bytes_atomic("blobs/big.bin", big)
    assert calls == ["PutObject", "PutObject"]
    assert set(object_keys(endpoint, prefix)) == {key, "blobs/big.bin"}
    assert storage.read_bytes("blobs/big.bin") == big
    assert hosts == {endpoint.removeprefix("http://")}


# --- the lake on S3 ----------------------------------------------------------------------------


def test_lake_writes_delta_tables_and_a_rewrite_replaces_the_slot(endpoint: str, prefix: str) -> None:
    storage = s3_storage(endpoint, prefix)
    root, options = storage.delta_location()
    assert root == f"s3://{BUCKET}/{prefix}"
    assert options["conditional_put"] == "etag", "commits are put-if-absent: no DynamoDB lock needed"
    assert options["aws_endpoint_url"] == endpoint and options["aws_region"] == REGION
    lake = open_lake(storage)

    lake.write([model_load("acme", version=1, models=7), model_load("other", version=1, models=3)])
    expected = expected_usage("acme", version=1, models=7) | expected_usage("other", version=1, models=3)
    assert usage(storage) == expected
    keys = object_keys(endpoint, prefix)
    assert all(DELTA_KEY_RE.fullmatch(k) for k in keys), sorted(keys)
    for name in TABLES:  # created (version 0), then one commit
        assert {k for k in keys if k.startswith(f"{name}/_delta_log/")} == {f"{name}/_delta_log/{v:020d}.json" for v in (0, 1)}
        assert [k for k in keys if k.startswith(f"{name}/snapshot_date=2026-03-01/")]
    committed = {f"model_snapshots/{p}" for p in committed_files(delta_table(storage, "model_snapshots"))}
    assert committed and committed <= set(keys)

    lake.write([model_load("acme", version=2, models=4)])  # a rerun of one account: fewer models
    expected = expected_usage("acme", version=2, models=4) | expected_usage("other", version=1, models=3)
    assert usage(storage) == expected
    lake.write([model_load("acme", version=3, models=0)])  # now empty: its rows go, the run says so
    assert usage(storage) == expected_usage("other", version=1, models=3)
    runs = delta_table(storage, "account_runs").to_pyarrow_table().to_pylist()
    assert sorted((r["account_id"], r["outcome"], r["model_count"]) for r in runs) == [("acme", "empty", 0), ("other", "ok", 3)]
    assert [v for v, _ in writes_by(storage, "model_snapshots")] == [1, 2, 3]
    # an older version still holds the replaced rows (the files stay until vacuum)
    old = DeltaTable(f"{root}/model_snapshots", version=1, storage_options=options)
    assert len(old.to_pyarrow_table(filters=[("account_id", "=", "acme")])) == 7


def test_a_commit_never_overwrites_a_log_entry_on_s3(endpoint: str, prefix: str) -> None:
    """Another writer's entry already holds the next version (as when it wins a race): the commit
    does not replace it but lands on the version after it. (That the check and the write are one
    atomic request is the next test's subject, and the racing writers' below.)"""
    storage = s3_storage(endpoint, prefix)
    lake = open_lake(storage)
    lake.write([model_load("acme", version=1, models=3)])
    table = lake.table(MODEL_SNAPSHOTS)  # the writer's view: version 1, before the other commit
    assert table.version() == 1
    other = {
        "commitInfo": {
            "timestamp": int(time.time() * 1000),
            "operation": "SET TBLPROPERTIES",
            "operationParameters": {},
            "test.writer": "other",
        }
    }
    key = storage.object_key("model_snapshots/_delta_log/00000000000000000002.json")
    body = (json.dumps(other) + "\n").encode()
    admin_client(endpoint).put_object(Bucket=BUCKET, Key=key, Body=body)

    lake.write([model_load("acme", version=2, models=5)], metadata={"test.writer": "lake"})
    assert admin_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    history = {c["version"]: c for c in delta_table(storage, "model_snapshots").history()}
    assert history[2].get("test.writer") == "other"
    assert history[3].get("test.writer") == "lake" and history[3]["operation"] == "WRITE"
    assert usage(storage) == expected_usage("acme", version=2, models=5)


def test_each_commit_is_one_conditional_put_on_the_wire(endpoint: str, prefix: str) -> None:
    """What makes concurrent commits safe without DynamoDB: delta-rs writes each log entry with one
    PUT carrying ``If-None-Match: *`` (S3 refuses it if the version exists), never a put or copy that
    could replace another writer's entry. Seen from moto's side, in its request recorder."""
    storage = s3_storage(endpoint, prefix)
    lake = open_lake(storage)
    lake.write([model_load("acme", version=1, models=3)])  # the tables exist: only the write below
    requests = recorded_requests(endpoint, lambda: lake.write([model_load("acme", version=2, models=4)]))
    log_entry = re.compile(rf"/{BUCKET}/{re.escape(prefix)}/(\w+)/_delta_log/(\d{{20}})\.json(\?.*)?")
    writes = [r for r in requests if r["method"] in ("PUT", "POST", "DELETE")]
    to_log = [(m[1], int(m[2]), r) for r in writes if (m := log_entry.fullmatch(urllib.parse.urlsplit(r["url"]).path))]
    assert sorted((table, version) for table, version, _ in to_log) == [(name, 2) for name in sorted(TABLES)]
    for table, _, request in to_log:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert request["method"] == "PUT" and headers.get("if-none-match") == "*", (table, request["headers"])
        assert "x-amz-copy-source" not in headers
    others = [r for r in writes if "_delta_log/" in r["url"] and r not in [x for _, _, x in to_log]]
    assert others == [], "nothing else written to a log (no temporary entry copied into place)"
    assert usage(storage) == expected_usage("acme", version=2, models=4)


def test_rotated_credentials_reach_the_next_commit(endpoint: str, prefix: str) -> None:
    """Instance-role and STS credentials expire (often hourly) while a backfill or a worker goes on: the
    lake asks the storage's boto3 session before each write and reopens its tables when the keys changed,
    so the next commit is signed with the new key, not the expired one."""
    from botocore.credentials import RefreshableCredentials

    holder = {"key": "AKIAROTATEDFIRST0001"}

    def current() -> dict[str, str]:  # always inside boto3's refresh window: every access asks again
        expiry = datetime.now(UTC) + timedelta(minutes=5)
        return {"access_key": holder["key"], "secret_key": "rotated-dummy-secret", "token": "", "expiry_time": expiry.isoformat()}

    storage = s3_storage(endpoint, prefix)
    storage._session._session._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[union-attr]
        current(), current, "test-rotation"
    )
    lake = open_lake(storage)
    first = recorded_requests(endpoint, lambda: lake.write([model_load("acme", version=1, models=2)]))
    holder["key"] = "AKIAROTATEDSECOND002"
    second = recorded_requests(endpoint, lambda: lake.write([model_load("acme", version=2, models=3)]))

    def signed_with(requests: list[dict[str, Any]]) -> set[str]:
        return {
            m[1]
            for r in requests
            if r["method"] == "PUT"
            for m in [re.search(r"Credential=(\w+)/", {k.lower(): v for k, v in r["headers"].items()}.get("authorization", ""))]
            if m
        }

    assert signed_with(first) == {"AKIAROTATEDFIRST0001"}
    assert signed_with(second) == {"AKIAROTATEDSECOND002"}
    assert usage(storage) == expected_usage("acme", version=2, models=3)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_readers_only_ever_see_a_committed_version(backend: str, endpoint: str, prefix: str, tmp_path: Path) -> None:
    """Concurrent readers during repeated rewrites of one slot always read one whole version."""
    storage = LocalStorage(tmp_path, fsync=False) if backend == "local" else s3_storage(endpoint, prefix)
    lake = open_lake(storage)

    def models_of(version: int) -> int:
        return 1 + (version * 37) % 200

    lake.write([model_load("acme", version=0, models=models_of(0))])
    done = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def read_loop() -> None:
        while not done.is_set():
            try:
                rows = usage(storage)
            except Exception as exc:  # noqa: BLE001 - a missing, partial or corrupt version
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            versions = {u // 1000 for u in rows.values()}
            if len(versions) != 1 or rows != expected_usage("acme", version=(v := versions.pop()), models=models_of(v)):
                problems.append(f"mixed or partial version: {len(rows)} rows of versions {sorted(versions)}")
            else:
                seen.append(v)

    readers = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for version in range(1, 7):
            lake.write([model_load("acme", version=version, models=models_of(version))])
    finally:
        done.set()
        for t in readers:
            t.join()
    assert problems == []
    assert len(seen) > 6 and len(set(seen)) > 2, "readers must have raced the writer"


def test_credentials_never_reach_logs_errors_or_repr(endpoint: str, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    storage = s3_storage(endpoint, prefix)
    write_raw_answer(storage, raw())
    missing = S3Storage("no-such-bucket", "x", endpoint_url=endpoint, region=REGION)
    with pytest.raises(StorageError) as info:
        write_raw_answer(missing, raw())
    assert isinstance(info.value, OSError) and "s3 write s3://no-such-bucket/x/raw/account_id=acme/" in str(info.value)
    assert "NoSuchBucket" in str(info.value) and info.value.__cause__ is None

    lake = open_lake(storage, metadata={"nugen.run_id": "creds"})
    lake.write([model_load("acme", version=1, models=2)])
    assert KEY_ID in lake.location.storage_options.values(), "the lake got the credentials"
    with pytest.raises(LakeError) as lake_info:
        open_lake(missing).write([model_load("acme", version=1, models=2)])
    assert "no-such-bucket" in str(lake_info.value)

    explicit = AwsCredentials(Secret("AKIAEXPLICITDUMMY"), Secret("explicit-dummy-secret"), Secret("explicit-tok"))
    given = s3_storage(endpoint, prefix, credentials=explicit)
    assert given.read_bytes(write_raw_answer(given, raw()))
    given_lake = open_lake(given)
    assert given_lake.location.storage_options["aws_secret_access_key"] == "explicit-dummy-secret"
    cfg = storage_config(tmp_path, root=f"s3://{BUCKET}/{prefix}", endpoint_url=endpoint, region=REGION)
    texts = [
        caplog.text,
        str(info.value),
        repr(info.value),
        repr(storage),
        repr(given),
        repr(explicit),
        repr(cfg),
        repr(open_configured_storage(cfg)),
        str(vars(storage)),
        repr(lake.location),
        str(lake.location),
        str(vars(lake)),
        repr(given_lake.location),
        str(lake_info.value),
        repr(lake_info.value),
        str(lake_info.value.__cause__),
        str(lake.table(MODEL_SNAPSHOTS)),
    ]
    for secret in (KEY_ID, SECRET, TOKEN, "AKIAEXPLICITDUMMY", "explicit-dummy-secret", "explicit-tok"):
        assert not [t for t in texts if secret in t], f"{secret} leaked"
    assert any(r.levelno == logging.DEBUG for r in caplog.records), "debug logging was on"


def test_an_unreachable_lake_is_a_lake_error_without_credentials(endpoint: str) -> None:
    """A lake that cannot be reached fails the batch with a LakeError (the writer's contract), whether
    the batch carries data or only failed runs."""
    missing = S3Storage("no-such-bucket", "x", endpoint_url=endpoint, region=REGION)
    for attempt in (
        lambda: open_lake(missing).write([model_load("acme", version=1, models=2)]),
        lambda: open_lake(missing).write([answer_to_load(dataclasses.replace(raw(), http_status=503, body=b"", error="HTTP 503"))]),
    ):
        with pytest.raises(LakeError, match="no-such-bucket") as info:
            attempt()
        assert not [s for s in (KEY_ID, SECRET, TOKEN) if s in str(info.value) or s in repr(info.value)]


# --- concurrent writers of one slot on S3 ---------------------------------------------------------

CONCURRENT_ACCOUNTS = [f"acct-{i:04d}" for i in range(1, 13)]
CONCURRENT_MODELS = 4


def write_accounts(endpoint: str, prefix: str, accounts: Sequence[str], version: int, writer: str) -> None:
    """One writer (a thread or a spawned process): its own storage and lake, one batch of ``accounts``."""
    lake = open_lake(s3_storage(endpoint, prefix), retry=CommitRetry(attempts=20, base_delay_s=0.02))
    lake.write([model_load(a, version=version, models=CONCURRENT_MODELS) for a in accounts], metadata={"test.writer": writer})


def check_concurrent_round(storage: Storage, batches: list[list[str]], version: int, round_no: int) -> None:
    """Every account's rows exactly once, of this round; one commit per writer per table in the round."""
    expected: dict[tuple[str, str], int] = {}
    for batch in batches:
        for account in batch:
            expected |= expected_usage(account, version=version, models=CONCURRENT_MODELS)
    assert usage(storage) == expected
    runs = delta_table(storage, "account_runs").to_pyarrow_table().column("account_id").to_pylist()
    assert sorted(runs) == sorted(a for batch in batches for a in batch)
    writers = sorted(f"{round_no}.{i}" for i in range(len(batches)))
    for name in TABLES:
        commits = [w for _, w in writes_by(storage, name) if w is not None and w.startswith(f"{round_no}.")]
        assert sorted(commits) == writers, f"{name}: one commit per writer, none lost or doubled"


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_concurrent_batches_of_one_slot(mode: str, endpoint: str, prefix: str) -> None:
    """Airflow's batches: contiguous account ranges of one slot written at once, on a table that does
    not exist yet (they race to create it) and again on the existing table (a rerun of the slot)."""
    storage = s3_storage(endpoint, prefix)
    batches = contiguous(CONCURRENT_ACCOUNTS, 4 if mode == "threads" else 3)
    if mode == "threads":
        for round_no in (1, 2):
            errors: list[BaseException] = []

            def run(i: int, batch: list[str], round_no: int = round_no, errors: list[BaseException] = errors) -> None:
                try:
                    write_accounts(endpoint, prefix, batch, round_no, f"{round_no}.{i}")
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(batches)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            check_concurrent_round(storage, batches, round_no, round_no)
    else:
        ctx = multiprocessing.get_context("spawn")  # delta-rs' runtime does not survive fork()
        with ctx.Pool(len(batches)) as pool:
            for round_no in (1, 2):
                pool.starmap(write_accounts, [(endpoint, prefix, b, round_no, f"{round_no}.{i}") for i, b in enumerate(batches)])
                check_concurrent_round(storage, batches, round_no, round_no)
    for name in TABLES:
        history = delta_table(storage, name).history()
        assert sorted(c["version"] for c in history) == list(range(len(history))), "no gap, no version twice"
        assert len(writes_by(storage, name)) == 2 * len(batches)
        # writers racing to create a table may leave more than one CREATE TABLE commit (delta-rs
        # accepts a second create on top of the first): the declared table all the same
        table = delta_table(storage, name)
        assert table.metadata().partition_columns == ["snapshot_date"]
        assert table.schema().to_arrow() == {s.name: s for s in LAKE_TABLES}[name].schema


class _Conflicts(logging.Handler):
    """Counts the lake's "commit conflicted; retrying" messages per table."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_table: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if "commit conflicted" in record.getMessage():
            table = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
            self.by_table[table] = self.by_table.get(table, 0) + 1


def race_same_slot(endpoint: str, prefix: str, writer: int, barrier: Any, results: Any) -> None:
    """A writer of the one account and slot every other writer writes: all open the tables at the same
    version, wait for each other, then commit (all but the first must meet a taken version)."""
    conflicts = _Conflicts()
    lake_log = logging.getLogger("nugen_etl.sinks.lake")
    lake_log.addHandler(conflicts)
    lake_log.setLevel(logging.INFO)
    try:
        lake = open_lake(s3_storage(endpoint, prefix), retry=CommitRetry(attempts=30, base_delay_s=0.02))
        for spec in LAKE_TABLES:
            lake.table(spec)
        load = model_load("acme", version=writer, models=3 + writer)
        barrier.wait(timeout=120)
        lake.write([load], metadata={"test.writer": str(writer)})
        results.put((writer, "ok", conflicts.by_table))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put((writer, f"{type(exc).__name__}: {exc}", conflicts.by_table))


def test_racing_writers_of_the_same_slot_never_both_win_a_version(endpoint: str, prefix: str) -> None:
    """Four processes write the SAME account and slot at once. If two of them could both write one log
    entry (no put-if-absent), a writer would report success while its commit is lost, or the table
    would end with two copies of the rows. Each success must be exactly one commit, and each table
    holds exactly the rows of the writer whose commit is newest."""
    storage = s3_storage(endpoint, prefix)
    open_lake(storage).write([model_load("acme", version=0, models=2)], metadata={"test.writer": "seed"})
    writers = 4
    ctx = multiprocessing.get_context("spawn")  # delta-rs' runtime does not survive fork()
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=race_same_slot, args=(endpoint, prefix, w, barrier, results)) for w in range(1, writers + 1)]
    for p in procs:
        p.start()
    try:
        reported = [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    outcome = {w: o for w, o, _ in reported}
    assert outcome == {w: "ok" for w in range(1, writers + 1)}

    for name in TABLES:
        commits = writes_by(storage, name)
        assert commits[0][1] == "seed"
        assert sorted(int(w) for _, w in commits[1:]) == list(range(1, writers + 1)), (
            f"{name}: every successful writer has exactly one commit"
        )
        history = delta_table(storage, name).history()
        assert sorted(c["version"] for c in history) == list(range(len(history))), "no gap, no version twice"
        # every writer read the same version: all but the first to commit met a taken version
        # (retried inside delta-rs, or by the lake after a conflict)
        retried = sum(
            c["operationMetrics"].get("num_retries", 0) for c in history if c["operation"] == "WRITE" and c.get("test.writer") != "seed"
        )
        retried += sum(by_table.get(name, 0) for _, _, by_table in reported)
        assert retried >= writers - 1, f"{name}: the writers did not race ({retried} retries)"
    last = {name: int(writes_by(storage, name)[-1][1]) for name in TABLES}
    assert usage(storage) == expected_usage("acme", version=last["model_snapshots"], models=3 + last["model_snapshots"]), (
        "one copy, of the last writer"
    )
    metrics = delta_table(storage, "model_metrics").to_pyarrow_table().to_pylist()
    assert len(metrics) == len({(m["model_id"], m["metric"]) for m in metrics})
    assert {m["model_id"] for m in metrics} == {f"model-acme-{i}" for i in range(3 + last["model_metrics"])}
    runs = delta_table(storage, "account_runs").to_pyarrow_table().to_pylist()
    assert [(r["account_id"], r["model_count"]) for r in runs] == [("acme", 3 + last["account_runs"])]


# --- the whole pipeline: local folder and s3:// side by side -------------------------------------


@pytest.fixture(scope="module")
def worlds(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same eight slots snapshotted twice from one simulator: into a local folder and into S3."""
    root = tmp_path_factory.mktemp("s3-e2e")
    state = SimulatorState(seed=11, accounts=4, models=5, start=T0)
    with serve(state, host="127.0.0.1", port=0) as server:
        local = make_config(root / "local", server.base_url, state, warehouse_url=f"duckdb:///{root / 'local.duckdb'}")
        s3 = s3_pipeline_config(local, endpoint, "e2e/run", root / "s3.duckdb", state)
        assert s3.s3 is not None and s3.storage_root is None
        for n, slot in enumerate(SLOTS):
            state.set_time(slot + FETCH_OFFSET)
            for config in (local, s3):
                if n == len(SLOTS) - 1:
                    state.inject(FAILING, [Fault.status(503)] * config.api.max_attempts)
                run_snapshot(config, snapshot_at=slot)
        yield {"root": root, "state": state, "server": server, "local": local, "s3": s3, "endpoint": endpoint}


def s3_pipeline_config(local: Config, endpoint: str, prefix: str, warehouse: Path, state: SimulatorState) -> Config:
    """``local`` with storage.root = s3://BUCKET/prefix, parsed from the same settings."""
    data = {
        "api": dataclasses.asdict(local.api),
        "storage": {"root": f"s3://{BUCKET}/{prefix}", "endpoint_url": endpoint, "region": REGION},
        "warehouse": {"url": f"duckdb:///{warehouse}", "batch_accounts": local.warehouse.batch_accounts},
        "accounts": [{"id": a.id, "api_key_env": a.api_key_env} for a in local.accounts],
    }
    return parse_config(data, base_dir=warehouse.parent, environ=environ_for(state))


def both(worlds: dict[str, Any]) -> tuple[Storage, Storage]:
    return open_configured_storage(worlds["s3"]), open_configured_storage(worlds["local"])


def test_s3_run_gives_the_same_views_as_the_local_run(worlds: dict[str, Any]) -> None:
    got = views(worlds["s3"])
    assert got == views(worlds["local"])
    assert got["usage"] and {r[2] for r in got["runs"]} == {"ok", "empty", "failed", "auth_failed"}


def test_objects_sit_under_the_documented_keys_and_hold_the_local_rows(worlds: dict[str, Any]) -> None:
    keys = object_keys(worlds["endpoint"], "e2e/run")
    local_root = worlds["local"].storage_root
    raw_keys = [k for k in keys if k.startswith("raw/")]
    assert all(RAW_KEY_RE.fullmatch(k) for k in raw_keys)
    assert len(raw_keys) == len(list(local_root.glob("raw/**/*.raw.gz"))) == len(SLOTS) * len(worlds["local"].accounts)
    lake_keys = {k for k in keys if not k.startswith("raw/")}
    bad = [k for k in lake_keys if not DELTA_KEY_RE.fullmatch(k)]
    assert not bad, f"nothing but raw answers and Delta tables: {bad[:5]}"
    s3, local = both(worlds)
    for name in TABLES:
        log = sorted(int(m["version"]) for k in lake_keys if (m := DELTA_KEY_RE.fullmatch(k)) and m["table"] == name and m["version"])
        table = delta_table(s3, name)
        assert log == list(range(table.version() + 1)), f"{name}: one object per committed version"
        assert {f"{name}/{p}" for p in committed_files(table)} <= lake_keys
        assert table.metadata().partition_columns == ["snapshot_date"]
    assert lake_rows(s3) == lake_rows(local)
    assert lake_rows(s3)["model_snapshots"]


def test_rerunning_a_slot_replaces_its_rows(worlds: dict[str, Any]) -> None:
    config, state = worlds["s3"], worlds["state"]
    s3, _ = both(worlds)
    slot = SLOTS[3]
    before_keys = object_keys(worlds["endpoint"], "e2e/run")
    before_rows, before_views = lake_rows(s3), views(config)
    before_versions = {name: delta_table(s3, name).version() for name in TABLES}
    before_fetched = (
        delta_table(s3, "model_snapshots")
        .to_pyarrow_table(filters=[("snapshot_at", "=", slot)], columns=["fetched_at"])
        .column("fetched_at")
        .to_pylist()
    )
    state.set_time(slot + FETCH_OFFSET + timedelta(seconds=30))
    summary = run_snapshot(config, snapshot_at=slot)

    assert lake_rows(s3) == before_rows, "the slot's rows replaced by the same rows: none added or lost"
    batches = -(-len(config.accounts) // config.warehouse.batch_accounts)
    for name in TABLES:  # one commit per batch (a batch of only failed accounts has no data to commit)
        table = delta_table(s3, name)
        new = [c for c in table.history(limit=batches) if c["version"] > before_versions[name]]
        assert sorted(c["version"] for c in new) == list(range(before_versions[name] + 1, table.version() + 1))
        assert 1 <= len(new) <= batches
        assert {c.get("nugen.slot") for c in new} == {slot.isoformat()}
        assert {c.get("nugen.command") for c in new} == {"run"}
        if name == "account_runs":
            assert len(new) == batches and sum(int(c["nugen.accounts"]) for c in new) == len(config.accounts)
    after_fetched = (
        delta_table(s3, "model_snapshots")
        .to_pyarrow_table(filters=[("snapshot_at", "=", slot)], columns=["fetched_at"])
        .column("fetched_at")
        .to_pylist()
    )
    assert len(after_fetched) == len(before_fetched) and min(after_fetched) > max(before_fetched), (
        "the slot's rows were written again (later fetched_at)"
    )
    after_keys = object_keys(worlds["endpoint"], "e2e/run")
    new_raw = [k for k in set(after_keys) - set(before_keys) if k.startswith("raw/")]
    assert len(new_raw) == len(summary.runs), "the raw archive adds one answer per account and fetch"
    assert set(before_keys) <= set(after_keys), "a rewrite deletes no object: replaced files wait for vacuum"
    assert views(config) == before_views
    # which is why a plain glob over the table folder is wrong: it also reads the replaced files
    s3fs = pafs.S3FileSystem(endpoint_override=worlds["endpoint"], region=REGION)
    globbed = ds.dataset(
        f"{BUCKET}/e2e/run/model_snapshots", filesystem=s3fs, format="parquet", partitioning="hive", exclude_invalid_files=True
    )
    assert globbed.count_rows() > len(before_rows["model_snapshots"])


def test_backfill_from_s3_into_an_empty_warehouse_reproduces_the_views(worlds: dict[str, Any], tmp_path: Path) -> None:
    state = worlds["state"]
    s3, local = both(worlds)
    fresh = s3_pipeline_config(worlds["local"], worlds["endpoint"], "e2e/run", tmp_path / "fresh.duckdb", state)
    before = {name: delta_table(s3, name).version() for name in TABLES}
    requests = state.request_count()
    summary = backfill(fresh, first=date(2026, 3, 1), last=date(2026, 3, 2))
    assert state.request_count() == requests, "backfill must never call the API"
    assert summary.exit_code == 0 and len(summary.runs) == len(SLOTS) * len(fresh.accounts)
    assert views(fresh) == views(worlds["local"])
    assert lake_rows(s3) == lake_rows(local)
    days = {slot.date() for slot in SLOTS}
    for name in TABLES:
        assert delta_table(s3, name).version() == before[name] + len(days), f"{name}: one commit per day"


def test_s3_delta_tables_read_with_deltalake_pyarrow_and_duckdb(worlds: dict[str, Any]) -> None:
    """The documented recipe (docs/lake.md): DeltaTable with the storage options, as a pyarrow dataset queried by
    DuckDB without any extension."""
    s3, _ = both(worlds)
    root, options = s3.delta_location()
    snapshots = DeltaTable(f"{root}/model_snapshots", storage_options=options).to_pyarrow_dataset()
    local_snapshots = DeltaTable(str(worlds["local"].storage_root / "model_snapshots")).to_pyarrow_dataset()
    assert snapshots.count_rows() == local_snapshots.count_rows() > 0
    query = "select account_id, count(*), sum(usage_count) from snapshots group by 1 order by 1"
    got = duckdb.sql(query).fetchall()
    assert got == duckdb.sql(query.replace("snapshots", "local_snapshots")).fetchall()
    expected: dict[str, list[int]] = {}
    for row in delta_table(s3, "model_snapshots").to_pyarrow_table().to_pylist():
        expected.setdefault(row["account_id"], []).append(row["usage_count"])
    assert got == [(a, len(u), sum(u)) for a, u in sorted(expected.items())]
    day = SLOTS[0].date()
    filtered = snapshots.to_table(filter=ds.field("snapshot_date") == day)
    assert filtered.num_rows and set(filtered.column("snapshot_at").to_pylist()) == {s for s in SLOTS if s.date() == day}


def test_a_missing_bucket_fails_each_account_not_the_run(worlds: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = dataclasses.replace(worlds["s3"], s3=dataclasses.replace(worlds["s3"].s3, bucket="no-such-bucket"))
    config = dataclasses.replace(config, warehouse=dataclasses.replace(config.warehouse, url=f"duckdb:///{tmp_path / 'wh.duckdb'}"))
    summary = run_snapshot(config, snapshot_at=SLOTS[-1], accounts=config.accounts[:2])
    accounts = {a.id for a in config.accounts[:2]}
    assert summary.exit_code == 1 and set(summary.failed_accounts) == accounts
    assert {r.account_id for r in summary.runs} == accounts
    assert all(
        r.outcome == "failed" and "raw archive write failed: s3 write s3://no-such-bucket/e2e/run/raw/" in (r.error or "")
        for r in summary.runs
    )
    # the lake is in the same bucket: the batch is refused there too, so (SlotWriter's contract)
    # it is not loaded into the warehouse either
    assert all(summary.errors[a].startswith("lake write failed: the lake at s3://no-such-bucket/e2e/run ") for a in accounts), (
        summary.errors
    )
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert con.execute("select count(*) from nugen.account_runs").fetchone() == (0,)
    texts = [caplog.text, *summary.errors.values(), *(r.error or "" for r in summary.runs)]
    assert not [t for t in texts if KEY_ID in t or SECRET in t or TOKEN in t]
