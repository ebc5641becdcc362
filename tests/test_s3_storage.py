"""Object storage: the raw archive and the Parquet datasets on an S3-compatible server on loopback
(moto's server mode). Same keys, same warehouse views and the same guarantees as the local folder:
one PUT per object under its final key, reruns replace, an empty slot deletes, no reader ever sees
a partial object, and credentials never reach a log, an error or a repr.

Dummy AWS credentials are set for the whole module and every client is pointed at loopback; the
AWS default endpoint is redirected to a dead loopback port, so nothing can reach the real AWS.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.config import Config as BotoConfig
from moto.server import ThreadedMotoServer

from nugen_etl.config import Config, S3Config, Secret, parse_config
from nugen_etl.errors import ConfigError
from nugen_etl.parquet_sink import slot_file_key, write_slot_parquet
from nugen_etl.pipeline import backfill, run_snapshot
from nugen_etl.raw_archive import list_archived_slots, read_raw_answer, write_raw_answer
from nugen_etl.records import RawAnswer
from nugen_etl.schemas import MODEL_METRICS, MODEL_SNAPSHOTS
from nugen_etl.simulator import Fault, SimulatorState, serve
from nugen_etl.storage import AwsCredentials, LocalStorage, S3Storage, StorageError, open_storage

from .e2e_helpers import FETCH_OFFSET, SLOTS, T0, environ_for, make_config
from .test_end_to_end import views

BUCKET = "nugen-test"
REGION = "us-east-1"
KEY_ID = "AKIANUGENTESTDUMMY01"
SECRET = "nugen-dummy-secret-0f9e8d7c6b5a"
TOKEN = "nugen-dummy-session-token-1a2b3c"
FAILING = "acct-0002"
SLOT = datetime(2026, 3, 1, 5, tzinfo=UTC)
RAW_KEY_RE = re.compile(r"raw/account_id=[^/]+/snapshot_date=\d{4}-\d{2}-\d{2}/"
                        r"\d{8}T\d{6}Z__\d{8}T\d{12}Z__[0-9a-f]{8}\.raw\.gz")
PARQUET_KEY_RE = re.compile(r"model_(snapshots|metrics)/snapshot_date=\d{4}-\d{2}-\d{2}/account_id=[^/]+/"
                            r"part-\d{8}T\d{6}Z\.parquet")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on loopback with the module's bucket; dummy credentials in the environment."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN",
                     "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_SESSION_TOKEN", TOKEN)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/nugen-test-aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/nugen-test-aws-credentials")
        mp.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a client without an override fails on loopback
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            url = f"http://{host}:{port}"
            admin_client(url).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            server.stop()


def admin_client(url: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=url, region_name=REGION,
                                          config=BotoConfig(s3={"addressing_style": "path"}))


def object_keys(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every object under ``prefix/``: storage key -> its listing entry."""
    out = {}
    for page in admin_client(url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        out.update({o["Key"][len(prefix) + 1:]: o for o in page.get("Contents", [])})
    return out


@pytest.fixture
def prefix() -> str:
    return f"unit/{uuid.uuid4().hex[:10]}"


def s3_storage(endpoint: str, prefix: str, **kw: Any) -> S3Storage:
    return S3Storage(BUCKET, prefix, endpoint_url=endpoint, region=REGION, **kw)


def raw(account: str = "acme", slot: datetime = SLOT, body: bytes = b'{"domain_aligned_models": []}',
        fetched: datetime | None = None) -> RawAnswer:
    return RawAnswer(account_id=account, snapshot_at=slot, fetched_at=fetched or slot + timedelta(seconds=7),
                     http_status=200, body=body, headers={"content-type": "application/json"}, attempts=1)


def rows_of(version: int) -> int:
    return 1 + (version * 397) % 3000


def versioned_rows(version: int) -> pa.Table:
    """A snapshot table whose size depends on ``version`` and whose every usage_count is ``version``."""
    n = rows_of(version)
    names = MODEL_SNAPSHOTS.schema.names
    rows = [{c: None for c in names} | {
        "account_id": "acme", "model_id": f"m{i}", "model_key": f"k{i}", "snapshot_at": SLOT,
        "snapshot_date": SLOT.date(), "fetched_at": SLOT, "usage_count": version,
        "extra_json": f'{{"pad": "{"x" * (i % 50)}"}}'} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=MODEL_SNAPSHOTS.schema)


def slot_tables(snapshots: pa.Table) -> dict[str, pa.Table]:
    return {"model_snapshots": snapshots, "model_metrics": MODEL_METRICS.schema.empty_table()}


def parquet_rows(data: bytes, *, drop_fetched: bool) -> list[dict[str, Any]]:
    table = pq.read_table(io.BytesIO(data))
    if drop_fetched and "fetched_at" in table.column_names:
        table = table.drop_columns(["fetched_at"])
    return table.to_pylist()


# --- configuration -----------------------------------------------------------------------------

def storage_config(tmp_path: Path, **storage: Any) -> Config:
    data = {"storage": storage, "warehouse": {"url": f"duckdb:///{tmp_path / 'wh.duckdb'}"},
            "accounts": [{"id": "acme", "api_key_env": "K"}]}
    return parse_config(data, base_dir=tmp_path, environ={})


def test_config_accepts_an_s3_root_and_keeps_credentials_out(tmp_path: Path) -> None:
    cfg = storage_config(tmp_path, root="s3://nugen-lake/etl/prod/", endpoint_url="http://127.0.0.1:9000",
                         region="eu-west-1")
    assert cfg.storage_root is None and cfg.storage_url == "s3://nugen-lake/etl/prod"
    assert cfg.s3 == S3Config(bucket="nugen-lake", prefix="etl/prod", endpoint_url="http://127.0.0.1:9000",
                              region="eu-west-1")
    assert storage_config(tmp_path, root="s3://nugen-lake").s3 == S3Config(bucket="nugen-lake")
    local = storage_config(tmp_path, root="data")
    assert local.s3 is None and local.storage_root == (tmp_path / "data").resolve()

    bad = [({"root": "s3://nugen-lake/x", "aws_secret_access_key": SECRET}, "credentials never sit in the file"),
           ({"root": "s3://nugen-lake/x", "endpoint_url": f"http://{KEY_ID}:{SECRET}@127.0.0.1:9000"}, "never sit in the URL"),
           ({"root": "s3://nugen-lake/a/../b"}, "invalid S3 prefix"),
           ({"root": "s3://nugen-lake//b"}, "invalid S3 prefix"),
           ({"root": "s3://Not_A_Bucket/x"}, "invalid S3 bucket"),
           ({"root": "gs://nugen-lake/x"}, "unsupported scheme"),
           ({"root": "data", "endpoint_url": "http://127.0.0.1:9000"}, "only applies when storage.root is an s3"),
           ({"root": "s3://nugen-lake", "region": "EU WEST"}, "storage.region")]
    for storage, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            storage_config(tmp_path, **storage)
        assert SECRET not in str(info.value) and KEY_ID not in str(info.value)
    with pytest.raises(ConfigError, match="warehouse.url: required"):
        parse_config({"storage": {"root": "s3://nugen-lake/x"}, "accounts": [{"id": "a", "api_key_env": "K"}]},
                     base_dir=tmp_path, environ={})


# --- the storage interface -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["local", "s3"])
def test_keys_cannot_leave_the_root(backend: str, endpoint: str, prefix: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root", fsync=False) if backend == "local" else s3_storage(endpoint, prefix)
    for key in ["../escape", "raw/../../escape", "/etc/passwd", "raw//x", "raw/./x", "raw\\..\\x", ""]:
        for attempt in (lambda: storage.write_bytes_atomic(key, b"x"), lambda: storage.read_bytes(key),
                        lambda: storage.delete(key), lambda: storage.listdir(key)):
            with pytest.raises(ValueError, match="unsafe storage key"):
                attempt()
    assert not list(tmp_path.rglob("*escape*")) and not object_keys(endpoint, prefix)
    assert not [k for k in object_keys(endpoint, "unit") if "escape" in k]


def test_raw_archive_on_s3_uses_the_local_keys_and_round_trips(endpoint: str, prefix: str, tmp_path: Path) -> None:
    storage = s3_storage(endpoint, prefix)
    body = b'{"x": "\xc3\xa9"}\n\x00\xff bytes as received'
    answers = [raw(fetched=SLOT + timedelta(seconds=1), body=body), raw(fetched=SLOT + timedelta(seconds=2)),
               raw(slot=SLOT + timedelta(hours=1)), raw(account="other", slot=SLOT + timedelta(days=3))]
    keys = [write_raw_answer(storage, a) for a in answers]
    paths = [write_raw_answer(tmp_path, a, fsync=False) for a in answers]
    assert all(RAW_KEY_RE.fullmatch(k) for k in keys)
    assert set(object_keys(endpoint, prefix)) == set(keys)
    assert [k.rsplit("/", 1)[0] for k in keys] == [str(p.parent.relative_to(tmp_path)) for p in paths]
    assert read_raw_answer(storage, keys[0]) == answers[0] == read_raw_answer(paths[0])

    start, end = SLOT, SLOT + timedelta(days=5)
    on_s3 = [(a, s, [k.rsplit("/", 1)[0] for k in ks])
             for a, s, ks in list_archived_slots(storage, start=start, end=end)]
    local = [(a, s, [str(p.parent.relative_to(tmp_path)) for p in ps])
             for a, s, ps in list_archived_slots(tmp_path, start=start, end=end)]
    assert on_s3 == local and [(a, s) for a, s, _ in on_s3] == [
        ("acme", SLOT), ("acme", SLOT + timedelta(hours=1)), ("other", SLOT + timedelta(days=3))]
    assert next(iter(list_archived_slots(storage, start=start, end=end)))[2] == keys[:2]  # oldest fetch first
    only_other = list(list_archived_slots(storage, start=SLOT, end=SLOT + timedelta(days=1), account_ids=["other"]))
    assert only_other == []


def test_each_object_is_one_put_under_its_final_key(endpoint: str, prefix: str) -> None:
    """No multipart upload, no temporary key, no directory marker: one PutObject per object, even large."""
    client = admin_client(endpoint)
    calls: list[str] = []
    hosts: set[str] = set()
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    client.meta.events.register("before-send.s3", lambda request, **_: hosts.add(request.url.split("/")[2]))
    storage = s3_storage(endpoint, prefix, client=client)

    write_slot_parquet(storage, slot_tables(versioned_rows(5)), account_id="acme", snapshot_at=SLOT)
    assert calls == ["PutObject", "DeleteObject"]  # snapshots written, the empty metrics slot deleted
    calls.clear()
    key = write_raw_answer(storage, raw())
    big = os.urandom(20 * 1024 * 1024)  # above any multipart threshold (boto3's transfer default is 8 MB)
    storage.write_bytes_atomic("blobs/big.bin", big)
    assert calls == ["PutObject", "PutObject"]
    assert set(object_keys(endpoint, prefix)) == {key, "blobs/big.bin", slot_file_key(MODEL_SNAPSHOTS, "acme", SLOT)}
    assert storage.read_bytes("blobs/big.bin") == big
    assert hosts == {endpoint.removeprefix("http://")}


def test_rewrite_replaces_and_an_empty_slot_deletes(endpoint: str, prefix: str) -> None:
    storage = s3_storage(endpoint, prefix)
    snapshots = slot_file_key(MODEL_SNAPSHOTS, "acme", SLOT)
    assert write_slot_parquet(storage, slot_tables(versioned_rows(1)), account_id="acme", snapshot_at=SLOT) \
        == [snapshots]
    assert snapshots == "model_snapshots/snapshot_date=2026-03-01/account_id=acme/part-20260301T050000Z.parquet"
    write_slot_parquet(storage, slot_tables(versioned_rows(2)), account_id="acme", snapshot_at=SLOT)
    assert list(object_keys(endpoint, prefix)) == [snapshots]
    assert {r["usage_count"] for r in parquet_rows(storage.read_bytes(snapshots), drop_fetched=False)} == {2}
    write_slot_parquet(storage, slot_tables(MODEL_SNAPSHOTS.schema.empty_table()), account_id="acme",
                       snapshot_at=SLOT)
    assert object_keys(endpoint, prefix) == {}
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(snapshots)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_readers_never_see_a_partial_object(backend: str, endpoint: str, prefix: str, tmp_path: Path) -> None:
    """Concurrent readers during repeated overwrites always get one whole, valid version."""
    storage = LocalStorage(tmp_path, fsync=False) if backend == "local" else s3_storage(endpoint, prefix)
    key = slot_file_key(MODEL_SNAPSHOTS, "acme", SLOT)
    write_slot_parquet(storage, slot_tables(versioned_rows(0)), account_id="acme", snapshot_at=SLOT)
    done = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def read_loop() -> None:
        while not done.is_set():
            try:
                table = pq.read_table(io.BytesIO(storage.read_bytes(key)))
            except Exception as exc:  # a partial, missing or corrupt object
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            versions = set(table.column("usage_count").to_pylist())
            if len(versions) != 1 or table.num_rows != rows_of(versions.pop()):
                problems.append(f"mixed or truncated version: {table.num_rows} rows")
            else:
                seen.append(table.column("usage_count")[0].as_py())

    readers = [threading.Thread(target=read_loop) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for version in range(1, 41):
            write_slot_parquet(storage, slot_tables(versioned_rows(version)), account_id="acme", snapshot_at=SLOT)
    finally:
        done.set()
        for t in readers:
            t.join()
    assert problems == []
    assert len(seen) > 40 and len(set(seen)) > 5, "readers must have raced the writer"


def test_credentials_never_reach_logs_errors_or_repr(endpoint: str, prefix: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    storage = s3_storage(endpoint, prefix)
    write_raw_answer(storage, raw())
    missing = S3Storage("no-such-bucket", "x", endpoint_url=endpoint, region=REGION)
    with pytest.raises(StorageError) as info:
        write_raw_answer(missing, raw())
    assert isinstance(info.value, OSError) and "s3 write s3://no-such-bucket/x/raw/account_id=acme/" in str(info.value)
    assert "NoSuchBucket" in str(info.value) and info.value.__cause__ is None

    explicit = AwsCredentials(Secret("AKIAEXPLICITDUMMY"), Secret("explicit-dummy-secret"), Secret("explicit-tok"))
    given = s3_storage(endpoint, prefix, credentials=explicit)
    assert given.read_bytes(write_raw_answer(given, raw()))
    cfg = storage_config(tmp_path, root=f"s3://{BUCKET}/{prefix}", endpoint_url=endpoint, region=REGION)
    texts = [caplog.text, str(info.value), repr(info.value), repr(storage), repr(given), repr(explicit),
             repr(cfg), repr(open_storage(cfg)), str(vars(storage))]
    for secret in (KEY_ID, SECRET, TOKEN, "AKIAEXPLICITDUMMY", "explicit-dummy-secret", "explicit-tok"):
        assert not [t for t in texts if secret in t], f"{secret} leaked"
    assert any(r.levelno == logging.DEBUG for r in caplog.records), "debug logging was on"


# --- the whole pipeline: local folder and s3:// side by side -------------------------------------

@pytest.fixture(scope="module")
def worlds(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same eight slots snapshotted twice from one simulator: into a local folder and into S3."""
    root = tmp_path_factory.mktemp("s3-e2e")
    state = SimulatorState(seed=11, accounts=4, models=5, start=T0)
    with serve(state, host="127.0.0.1", port=0) as server:
        local = make_config(root / "local", server.base_url, state,
                            warehouse_url=f"duckdb:///{root / 'local.duckdb'}")
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
    data = {"api": dataclasses.asdict(local.api),
            "storage": {"root": f"s3://{BUCKET}/{prefix}", "endpoint_url": endpoint, "region": REGION},
            "warehouse": {"url": f"duckdb:///{warehouse}", "batch_accounts": local.warehouse.batch_accounts},
            "accounts": [{"id": a.id, "api_key_env": a.api_key_env} for a in local.accounts]}
    return parse_config(data, base_dir=warehouse.parent, environ=environ_for(state))


def local_parquet(config: Config) -> dict[str, bytes]:
    assert config.storage_root is not None
    return {str(p.relative_to(config.storage_root)): p.read_bytes()
            for p in sorted(config.storage_root.glob("model_*/**/*.parquet"))}


def s3_parquet(worlds: dict[str, Any]) -> dict[str, bytes]:
    storage = open_storage(worlds["s3"])
    return {k: storage.read_bytes(k) for k in object_keys(worlds["endpoint"], "e2e/run") if k.startswith("model_")}


def test_s3_run_gives_the_same_views_as_the_local_run(worlds: dict[str, Any]) -> None:
    got = views(worlds["s3"])
    assert got == views(worlds["local"])
    assert got["usage"] and {r[2] for r in got["runs"]} == {"ok", "empty", "failed", "auth_failed"}


def test_objects_sit_under_the_documented_keys(worlds: dict[str, Any]) -> None:
    keys = object_keys(worlds["endpoint"], "e2e/run")
    local_root = worlds["local"].storage_root
    raw_keys = [k for k in keys if k.startswith("raw/")]
    assert all(RAW_KEY_RE.fullmatch(k) for k in raw_keys)
    assert len(raw_keys) == len(list(local_root.glob("raw/**/*.raw.gz"))) == len(SLOTS) * len(worlds["local"].accounts)
    parquet = {k for k in keys if not k.startswith("raw/")}
    assert all(PARQUET_KEY_RE.fullmatch(k) for k in parquet), "nothing but raw answers and slot files"
    on_s3, local = s3_parquet(worlds), local_parquet(worlds["local"])
    assert set(on_s3) == set(local) == parquet
    for key in local:
        assert parquet_rows(on_s3[key], drop_fetched=True) == parquet_rows(local[key], drop_fetched=True), key


def test_rerunning_a_slot_replaces_its_objects(worlds: dict[str, Any]) -> None:
    config, state = worlds["s3"], worlds["state"]
    slot = SLOTS[3]
    before_keys = object_keys(worlds["endpoint"], "e2e/run")
    before = s3_parquet(worlds)
    before_views = views(config)
    state.set_time(slot + FETCH_OFFSET)
    summary = run_snapshot(config, snapshot_at=slot)
    after_keys = object_keys(worlds["endpoint"], "e2e/run")
    after = s3_parquet(worlds)
    assert set(after) == set(before), "same slot files, none added or lost"
    rewritten = [k for k in after if f"part-{slot:%Y%m%dT%H%M%SZ}" in k]
    assert rewritten and all(after_keys[k]["LastModified"] >= before_keys[k]["LastModified"] for k in rewritten)
    assert any(after[k] != before[k] for k in rewritten), "the slot's files were written again (new fetched_at)"
    for key in after:
        assert parquet_rows(after[key], drop_fetched=True) == parquet_rows(before[key], drop_fetched=True), key
    new_raw = set(after_keys) - set(before_keys)
    assert len(new_raw) == len(summary.runs) and all(k.startswith("raw/") for k in new_raw), \
        "the raw archive only ever adds one answer per account and fetch"
    assert views(config) == before_views


def test_backfill_from_s3_into_an_empty_warehouse_reproduces_the_views(worlds: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    state = worlds["state"]
    fresh = s3_pipeline_config(worlds["local"], worlds["endpoint"], "e2e/run", tmp_path / "fresh.duckdb", state)
    requests = state.request_count()
    summary = backfill(fresh, first=date(2026, 3, 1), last=date(2026, 3, 2))
    assert state.request_count() == requests, "backfill must never call the API"
    assert summary.exit_code == 0 and len(summary.runs) == len(SLOTS) * len(fresh.accounts)
    assert views(fresh) == views(worlds["local"])


def test_s3_dataset_reads_with_pyarrow_and_duckdb(worlds: dict[str, Any]) -> None:
    """The README's recipe: pyarrow.dataset over S3FileSystem, queried by DuckDB without httpfs."""
    s3 = pafs.S3FileSystem(endpoint_override=worlds["endpoint"], region=REGION)
    snapshots = ds.dataset(f"{BUCKET}/e2e/run/model_snapshots", filesystem=s3, format="parquet",
                           partitioning="hive")
    local = ds.dataset(worlds["local"].storage_root / "model_snapshots", format="parquet", partitioning="hive")
    assert snapshots.count_rows() == local.count_rows() > 0
    query = "select account_id, count(*), sum(usage_count) from snapshots group by 1 order by 1"
    assert duckdb.sql(query).fetchall() == duckdb.sql(query.replace("snapshots", "local")).fetchall()


def test_a_missing_bucket_fails_each_account_not_the_run(worlds: dict[str, Any], tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = dataclasses.replace(worlds["s3"], s3=dataclasses.replace(worlds["s3"].s3, bucket="no-such-bucket"))
    config = dataclasses.replace(config, warehouse=dataclasses.replace(
        config.warehouse, url=f"duckdb:///{tmp_path / 'wh.duckdb'}"))
    summary = run_snapshot(config, snapshot_at=SLOTS[-1], accounts=config.accounts[:2])
    assert summary.exit_code == 1 and set(summary.failed_accounts) == {a.id for a in config.accounts[:2]}
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        errors = con.execute("select outcome, error from nugen.account_runs").fetchall()
    assert len(errors) == 2 and all(o == "failed" and "raw archive write failed: s3 write "
                                    "s3://no-such-bucket/e2e/run/raw/" in e for o, e in errors)
    assert not [t for t in [caplog.text, *(e for _, e in errors)] if KEY_ID in t or SECRET in t or TOKEN in t]
