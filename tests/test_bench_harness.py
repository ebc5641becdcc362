"""The benchmark harness runs end to end on tiny sizes and writes a well-formed result.

Correctness of the harness only: no timing is asserted (benchmarks measure, CI machines are noisy).
"""

from __future__ import annotations

import json
import os

import pytest

bench_runner = pytest.importorskip("bench.runner")
from bench import memory  # noqa: E402
from bench.sizes import TINY  # noqa: E402
from nugen_etl.config import WarehouseConfig  # noqa: E402


def test_quick_harness_on_tiny_sizes_writes_json_and_markdown(tmp_path):
    pg_url = os.environ.get("NUGEN_TEST_PG_URL")
    scenarios = ["fanout", "throughput", "rebuild", "flat_cost", "memory", "lake", "bi"]
    result = bench_runner.run_suite(TINY, scenarios=scenarios, out=tmp_path / "out", pg_url=pg_url, cache=tmp_path / "cache")

    written = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert list(written["scenarios"]) == scenarios
    for name, res in result["scenarios"].items():
        assert "error" not in res, (name, res.get("error"))
        assert res["rows"], name
    s = result["scenarios"]
    assert s["fanout"]["outcomes"] == {"ok": TINY.fanout_accounts}
    assert len(s["fanout"]["fetch_alone_s"]) == TINY.reps and all(w > 0 for w in s["fanout"]["fetch_alone_s"])
    assert len(s["fanout"]["cpu_s"]) == TINY.reps and all(c > 0 for c in s["fanout"]["cpu_s"])
    assert s["fanout"]["cpu_budget_s"] == pytest.approx((os.cpu_count() or 1) * 1.3 * s["fanout"]["limit_s"])
    assert s["throughput"]["records"] == TINY.tp_accounts * TINY.tp_models
    assert s["throughput"]["baseline"][0]["records"] == TINY.tp_baseline_accounts * TINY.tp_models
    rebuild_rows = 24 * TINY.rb_days * TINY.rb_accounts * TINY.rb_models
    engines = s["rebuild"]["engines"]
    assert set(engines) == ({"duckdb", "postgresql"} if pg_url else {"duckdb"})
    for res in engines.values():
        assert res["rows"] == res["warehouse_rows"] == rebuild_rows
        assert res["errors"] == 0 and res["peak_rss_mib"] > 0 and res["cpu_s"] > 0
        stages = res["stages_s"]  # a backfill of TINY's single day: one lake write and one warehouse load
        assert (stages["lake_calls"], stages["warehouse_calls"]) == (TINY.rb_days, TINY.rb_days)
        assert stages["lake"] > 0 and stages["warehouse"] > 0 and res["main_cpu_s"] > 0
        assert res["cpu_s"] == res["main_cpu_s"] + res["replay_cpu_s"] and res["replay_cpu_s"] >= 0
    assert s["rebuild"]["read_parse_rows"] == rebuild_rows and s["rebuild"]["read_parse_rows_per_s"] > 0
    assert s["rebuild"]["replay_only"]["rows"] == rebuild_rows and s["rebuild"]["replay_only"]["wall_s"] > 0
    live = s["lake"]["live"]
    batches = -(-TINY.lake_accounts // TINY.lake_batch)
    assert live["records"] == TINY.lake_slots * TINY.lake_accounts * TINY.lake_models
    assert live["commits"] == len(live["batch_s"]) == TINY.lake_slots * batches
    compaction = live["compaction"]
    tables = {"model_snapshots", "model_metrics", "account_runs"}
    assert compaction["files_before"] == dict.fromkeys(tables, TINY.lake_slots * batches)
    assert set(compaction["files_after"]) == tables and all(0 < n <= 2 for n in compaction["files_after"].values())
    assert compaction["identical"] == dict.fromkeys(tables, True)
    assert compaction["rows"]["model_snapshots"] == live["records"]
    assert compaction["rows"]["account_runs"] == TINY.lake_slots * TINY.lake_accounts
    scan = s["lake"]["scan"]
    assert (scan["days"], scan["accounts"], scan["models"]) == (TINY.rb_days, TINY.rb_accounts, TINY.rb_models)
    assert scan["rows"] == rebuild_rows and scan["groups"] == TINY.rb_days * TINY.rb_accounts
    assert scan["old_files"] == 24 * TINY.rb_days * TINY.rb_accounts and scan["same_result"] is True
    assert scan["compacted_days"] == TINY.rb_days and 0 < scan["delta_max_files_per_day"] <= 2
    assert len(scan["delta_s"]) == len(scan["old_s"]) >= TINY.reps
    for res in s["flat_cost"]["engines"].values():
        assert res["history_rows"] == TINY.fc_history_rows
    assert set(s["memory"]["engines"]) == ({"duckdb", "postgresql"} if pg_url else {"duckdb"})
    for res in (*s["memory"]["engines"].values(), s["memory"]["unbudgeted"]):
        for n in (TINY.mem_small, TINY.mem_large):
            assert [r["records"] for r in res["runs"][str(n)]] == [n * TINY.mem_models] * TINY.reps
    unbudgeted_runs = [r for runs in s["memory"]["unbudgeted"]["runs"].values() for r in runs]
    assert {(r["duckdb_memory_limit"], r["batch_accounts"]) for r in unbudgeted_runs} == {
        (None, memory.UNBUDGETED["batch_accounts"])
    }  # "none": DuckDB's own limit
    defaults = WarehouseConfig(url="duckdb:///w.duckdb")
    assert {(r["duckdb_memory_limit"], r["batch_accounts"]) for r in s["memory"]["engines"]["duckdb"]["runs"][str(TINY.mem_large)]} == {
        (defaults.duckdb_memory_limit, defaults.batch_accounts)
    }
    assert set(s["bi"]["engines"]) == ({"duckdb", "postgresql"} if pg_url else {"duckdb"})
    bi_history = {res["history_rows"] for res in s["bi"]["engines"].values()}
    assert len(bi_history) == 1 and bi_history.pop() > 0  # the same history on every engine
    for res in s["bi"]["engines"].values():
        assert res["run_rows"] == TINY.bi_accounts * TINY.bi_hours
        assert len(res["queries"]) == 5
        for q in res["queries"].values():  # the rollup-backed views answer as the pre-rollup ones
            assert q["same_answer"] and len(q["times_s"]) == TINY.bi_reps
        assert len(res["full_s"]) == len(res["empty_s"]) == TINY.bi_slot_reps and res["ratio"] > 0
    table = (tmp_path / "out" / "latest.md").read_text()
    assert "| 1 fan-out |" in table and "| 3 rebuild |" in table
    assert "| 1 fan-out | pipeline CPU / CPU the target leaves" in table
    assert all(f"| 3 rebuild | CPU per row, backfill -> {engine}" in table for engine in engines)
    assert all(f"| 3 rebuild | where the CPU goes, backfill -> {engine}" in table for engine in engines)
    assert "| 3 rebuild | replay + flatten alone" in table
    assert "| 2 throughput | stage parse+flatten |" in table and "| >= 200,000 |" in table
    assert all(f"| 8 bi | {engine}: usage trend, all accounts, 30 days |" in table for engine in s["bi"]["engines"])
    assert "| 2 throughput | stage lake |" in table and "| 2 throughput | end to end, fsync off |" in table
    assert "| 7 lake | live run's lake stage" in table
    assert all(f"| 7 lake | data files in a closed day after compaction: {name} |" in table for name in tables)
    assert f"| 7 lake | {TINY.rb_days}-day lake scan through Delta" in table
    assert "| 7 lake | the same scan over the old per-slot layout" in table
    assert all(f"| 5 memory | {engine}: peak RSS" in table for engine in s["memory"]["engines"])
    settings = ", ".join(f"{k} {v}" for k, v in memory.UNBUDGETED.items())
    assert f"| 5 memory | duckdb without the per-load budget ({settings}): peak RSS" in table


def test_the_peer_scenario_runs_dlt_when_installed_and_says_so_when_not(tmp_path):
    import importlib.util

    result = bench_runner.run_suite(TINY, scenarios=["peer"], out=tmp_path / "out")
    res = result["scenarios"]["peer"]
    assert "error" not in res, res.get("error")
    table = (tmp_path / "out" / "latest.md").read_text()
    if importlib.util.find_spec("dlt") is None:
        assert res["rows"] == [] and "peer: skipped, dlt is not installed" in table
        return
    assert res["records"] == TINY.peer_accounts * TINY.peer_models
    assert res["ratio"] == pytest.approx(sorted(res["dlt_s"])[0] / sorted(res["nugen_s"])[0])  # one rep each
    assert "| 9 peer | nugen-etl speed-up over dlt |" in table and "| >= 20x |" in table
