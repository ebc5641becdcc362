"""Scenario 7, lake: the Delta tables as a live run writes them, compacts them and a reader scans them.

- The live run's lake stage: ``Lake.write`` of a day of hourly slots in the batches a live run makes
  (``batch_accounts`` accounts a batch), each slot through a new run's lake, as records/s.
- That day closed and compacted (``nugen-etl compact --day``): data files per table before and after,
  and whether the rows are identical.
- A group-by over every account and day of the rebuild scenario's lake (the issue's 30-day size by
  default, compacted as the maintenance DAG leaves closed days) through a Delta reader
  (deltalake -> pyarrow dataset -> DuckDB), beside the same query over the same rows in nugen-etl
  0.1's per-slot layout (one zstd Parquet file per account and slot, read with DuckDB's
  ``read_parquet`` and hive partitioning). The old layout is generated once per size into the cache.

Everything that uses deltalake in this process runs after the archive generator's process pool, and
the old-layout writer's pool is spawned, not forked: delta-rs' runtime does not survive ``fork()``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.archive import ensure_archive
from bench.common import FETCH_OFFSET, SEED, T0, Context, make_config, median, row, run_job
from bench.sizes import Sizes
from nugen_etl.pipeline import compact, run_lake
from nugen_etl.records import RawAnswer
from nugen_etl.schemas import MODEL_SNAPSHOTS
from nugen_etl.simulator import SimulatorState
from nugen_etl.sinks.lake import LAKE_TABLES
from nugen_etl.slots import slot_stamp
from nugen_etl.storage import LocalStorage
from nugen_etl.transform import answer_to_load

SCAN_TARGET_S = 0.5
FILES_TARGET = 2
# Per account and day over every account: the kind of query a dashboard runs over the lake.
QUERY = (
    "SELECT account_id, snapshot_date, count(*) AS models, sum(usage_count) AS usage, "
    "avg(accuracy) AS accuracy FROM {source} GROUP BY account_id, snapshot_date "
    "ORDER BY account_id, snapshot_date"
)
# nugen-etl 0.1's slot files: the partition columns in the path only, zstd, no dictionary pages,
# statistics on the identity and time columns (as its parquet_sink wrote them).
OLD_PARTITIONS = ("snapshot_date", "account_id")
OLD_STATISTICS = ["snapshot_at", "fetched_at", "model_id", "model_key", "status", "deployment_status"]


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": []}
    out["live"] = live = _live_day(sizes, ctx)
    rate = live["records"] / live["write_s"]
    out["rows"].append(
        row(
            "7 lake",
            f"live run's lake stage: Lake.write of {live['slots']} hourly slots x {live['accounts']} "
            f"accounts x {live['models']} models, {live['batch']} accounts a batch",
            round(rate),
            "rec/s",
            note=f"a day of small batches (the issue's target is on scenario 2's lake stage, where it was measured): "
            f"{live['records']:,} records in {live['write_s']:.2f} s, {live['commits']} commits per table; "
            f"median {median(live['batch_s']) * 1000:.0f} ms a batch (3 commits), first slot "
            f"{live['batch_s'][0] * 1000:.0f} ms, last {live['batch_s'][-1] * 1000:.0f} ms",
        )
    )
    c = live["compaction"]
    for name, after in c["files_after"].items():
        out["rows"].append(
            row(
                "7 lake",
                f"data files in a closed day after compaction: {name}",
                after,
                "files",
                target=f"<= {FILES_TARGET}",
                met=after <= FILES_TARGET,
                note=f"before: {c['files_before'][name]} (a live day: {live['slots']} slots x "
                f"{live['batches_per_slot']} batch(es)); rows identical after: "
                f"{'yes' if c['identical'][name] else 'NO'}; `compact --day` took {c['wall_s']:.2f} s",
            )
        )
    out["scan"] = scan = _scan(sizes, ctx)
    delta_s, old_s = median(scan["delta_s"]), median(scan["old_s"])
    days, n = scan["days"], scan["accounts"]
    out["rows"].append(
        row(
            "7 lake",
            f"{days}-day lake scan through Delta (deltalake -> pyarrow dataset -> DuckDB): per account and day over all {n} accounts",
            round(delta_s, 3),
            "s",
            target=f"<= {SCAN_TARGET_S} s",
            met=delta_s <= SCAN_TARGET_S,
            note=f"{scan['rows']:,} rows in {scan['delta_files']} data files (at most {scan['delta_max_files_per_day']} "
            f"per day after compacting every closed day in {scan['compact_s']:.1f} s); count, sum(usage_count), "
            f"avg(accuracy); opening the table included",
        )
    )
    out["rows"].append(
        row(
            "7 lake",
            "the same scan over the old per-slot layout (DuckDB read_parquet, hive partitioning)",
            round(old_s, 3),
            "s",
            note=f"{scan['old_files']:,} files (one per account and slot); "
            f"{old_s / delta_s:,.0f}x the Delta scan; same result: "
            f"{'yes' if scan['same_result'] else 'NO'}",
        )
    )
    return out


# --- the live run's lake stage and compaction -------------------------------------------------------


def _live_day(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    n, m, slots, batch = sizes.lake_accounts, sizes.lake_models, sizes.lake_slots, sizes.lake_batch
    state = SimulatorState(SEED, n + 1, models=m, start=T0)
    accounts = state.account_ids[:n]
    root = ctx.work / "lake-live"
    storage = LocalStorage(root)
    config = make_config(root, state, account_ids=accounts, batch_accounts=batch)
    for spec in LAKE_TABLES:  # the tables exist, as for every run but a lake's first
        run_lake(storage, "run", "bench-create").table(spec)
    batch_s: list[float] = []
    records = 0
    day = T0.date()
    for hour in range(slots):
        slot = T0 + timedelta(hours=hour)
        fetched = slot + FETCH_OFFSET
        loads = [
            answer_to_load(RawAnswer(account_id=a, snapshot_at=slot, fetched_at=fetched, http_status=200, body=state.body_at(a, fetched)))
            for a in accounts
        ]
        records += sum(load.run.model_count for load in loads)
        started = time.perf_counter()
        lake = run_lake(storage, "run", f"bench-live-{hour}")  # each slot is a new run: it opens the tables
        for i in range(0, len(loads), batch):
            t = time.perf_counter()
            lake.write(loads[i : i + batch])
            batch_s.append(time.perf_counter() - t)
        del lake, loads
        if hour == 0:
            ctx.log(f"  lake live: first slot {time.perf_counter() - started:.2f} s")
    write_s = sum(batch_s)
    ctx.log(f"  lake live: {records:,} records in {write_s:.2f} s = {records / write_s:,.0f} rec/s")
    lake = run_lake(storage, "bench", None)
    keys = {spec.name: list(spec.primary_key) for spec in LAKE_TABLES}
    before = {spec.name: _sorted(lake.read(spec), keys[spec.name]) for spec in LAKE_TABLES}
    started = time.perf_counter()
    report = compact(config, day=day, storage=storage, now=datetime.combine(day + timedelta(days=2), datetime.min.time(), UTC))
    compact_s = time.perf_counter() - started
    after = {spec.name: _sorted(run_lake(storage, "bench", None).read(spec), keys[spec.name]) for spec in LAKE_TABLES}
    key = day.isoformat()
    compaction = {
        "day": key,
        "wall_s": compact_s,
        "files_before": report.files_before[key],
        "files_after": report.files_after[key],
        "vacuumed": report.vacuumed,
        "rows": {name: t.num_rows for name, t in after.items()},
        "identical": {name: before[name].equals(after[name]) for name in before},
    }
    ctx.log(
        f"  lake compaction of {key}: files {compaction['files_before']} -> {compaction['files_after']} "
        f"in {compact_s:.2f} s, identical {compaction['identical']}"
    )
    shutil.rmtree(root, ignore_errors=True)
    return {
        "accounts": n,
        "models": m,
        "slots": slots,
        "batch": batch,
        "batches_per_slot": -(-n // batch),
        "commits": len(batch_s),
        "records": records,
        "write_s": write_s,
        "batch_s": batch_s,
        "compaction": compaction,
    }


def _sorted(table: Any, keys: list[str]) -> Any:
    return table.sort_by([(k, "ascending") for k in keys])


# --- the 30-day scan ---------------------------------------------------------------------------


def _scan(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    from deltalake import DeltaTable

    lake_info = ctx.shared.get("rebuilt_lake")
    if lake_info is None:  # the rebuild scenario did not run: rebuild the same lake here
        days, n, m = sizes.rb_days, sizes.rb_accounts, sizes.rb_models
        archive = ensure_archive(ctx.cache, days, n, m)
        root = ctx.work / "lake-rebuild"
        res = run_job(
            "rebuild",
            {
                "archive": str(archive),
                "root": str(root),
                "days": days,
                "accounts": n,
                "models": m,
                "warehouse_url": f"duckdb:///{root / 'warehouse.duckdb'}",
            },
        )
        ctx.log(f"  lake: rebuilt {res['rows']:,} rows in {res['wall_s']:.1f} s for the scan")
        (root / "raw").unlink()
        lake_info = {"root": str(root), "archive": str(archive), "days": days, "accounts": n, "models": m}
    root = Path(lake_info["root"])
    days = lake_info["days"]
    state = SimulatorState(SEED, lake_info["accounts"] + 1, models=lake_info["models"], start=T0)
    config = make_config(root, state)
    started = time.perf_counter()
    report = compact(
        config, storage=LocalStorage(root), now=datetime.combine(T0.date() + timedelta(days=days + 1), datetime.min.time(), UTC)
    )
    compact_s = time.perf_counter() - started
    ctx.log(f"  lake: compacted {len(report.days)} closed days in {compact_s:.1f} s")
    uri = str(root / MODEL_SNAPSHOTS.name)
    per_day = run_lake(LocalStorage(root), "bench", None).day_files(MODEL_SNAPSHOTS)

    old = _ensure_old_layout(ctx, uri, Path(lake_info["archive"]).name)
    old_files = sum(1 for _ in (old / MODEL_SNAPSHOTS.name).glob("*/*/*.parquet"))

    def delta_scan() -> list[tuple]:
        dataset = DeltaTable(uri).to_pyarrow_dataset()
        con = _connect()
        try:
            con.register("model_snapshots", dataset)
            return con.sql(QUERY.format(source="model_snapshots")).fetchall()
        finally:
            con.close()

    def old_scan() -> list[tuple]:
        con = _connect()
        try:
            glob = str(old / MODEL_SNAPSHOTS.name / "*" / "*" / "*.parquet")
            return con.sql(QUERY.format(source=f"read_parquet('{glob}', hive_partitioning = true)")).fetchall()
        finally:
            con.close()

    delta_s, old_s = [], []
    delta_rows = old_rows = []
    for rep in range(max(sizes.reps, 3)):
        t = time.perf_counter()
        delta_rows = delta_scan()
        delta_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        old_rows = old_scan()
        old_s.append(time.perf_counter() - t)
        ctx.log(f"  lake scan rep {rep + 1}: Delta {delta_s[-1]:.3f} s, old layout {old_s[-1]:.3f} s")
    return {
        "days": days,
        "accounts": lake_info["accounts"],
        "models": lake_info["models"],
        "rows": sum(r[2] for r in delta_rows),
        "groups": len(delta_rows),
        "compact_s": compact_s,
        "compacted_days": len(report.days),
        "delta_files": sum(len(f) for f in per_day.values()),
        "delta_max_files_per_day": max((len(f) for f in per_day.values()), default=0),
        "old_files": old_files,
        "delta_s": delta_s,
        "old_s": old_s,
        "same_result": _same(delta_rows, old_rows),
    }


def _connect() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # it would print to stdout, where the table goes
    return con


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal group by group: keys, counts and sums exactly, averages to rounding."""

    def norm(rows: list[tuple]) -> list[tuple]:
        return [(str(r[0]), date.fromisoformat(str(r[1])[:10]), int(r[2]), int(r[3]), r[4]) for r in rows]

    x, y = norm(a), norm(b)
    return len(x) == len(y) and all(
        p[:4] == q[:4] and (p[4] is None) == (q[4] is None) and (p[4] is None or abs(p[4] - q[4]) <= 1e-9 * max(1.0, abs(p[4])))
        for p, q in zip(x, y, strict=False)
    )


def _ensure_old_layout(ctx: Context, delta_uri: str, tag: str) -> Path:
    """The Delta table's rows in nugen-etl 0.1's per-slot layout (model_snapshots only), cached per size."""
    from deltalake import DeltaTable

    root = ctx.cache / f"old-layout-{tag}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    days = sorted(
        {
            str(v)
            for v in DeltaTable(delta_uri)
            .to_pyarrow_dataset()
            .to_table(columns=["snapshot_date"])
            .column("snapshot_date")
            .unique()
            .to_pylist()
        }
    )
    started = time.perf_counter()
    # spawned, not forked: this process has a delta-rs runtime
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        files = sum(pool.map(_write_old_day, [(delta_uri, d, str(root)) for d in days]))
    (root / ".complete").touch()
    ctx.log(f"  lake: old per-slot layout written ({files:,} files) in {time.perf_counter() - started:.1f} s")
    return root


def _write_old_day(args: tuple[str, str, str]) -> int:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    delta_uri, day, root = args
    table = DeltaTable(delta_uri).to_pyarrow_dataset().to_table(filter=ds.field("snapshot_date") == date.fromisoformat(day))
    table = table.sort_by([("account_id", "ascending"), ("snapshot_at", "ascending")])
    columns = [f.name for f in MODEL_SNAPSHOTS.schema if f.name not in OLD_PARTITIONS]
    accounts = table.column("account_id").to_pylist()
    slots = table.column("snapshot_at").to_pylist()
    starts = [i for i in range(len(accounts)) if i == 0 or (accounts[i], slots[i]) != (accounts[i - 1], slots[i - 1])]
    written = 0
    for j, start in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(accounts)
        folder = Path(root) / MODEL_SNAPSHOTS.name / f"snapshot_date={day}" / f"account_id={accounts[start]}"
        folder.mkdir(parents=True, exist_ok=True)
        part = table.slice(start, end - start).select(columns)
        pq.write_table(
            part,
            folder / f"part-{slot_stamp(slots[start])}.parquet",
            compression="zstd",
            use_dictionary=False,
            write_statistics=OLD_STATISTICS,
        )
        written += 1
    return written
