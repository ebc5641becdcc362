"""Scenario 6, DAG parse: the import time of each ``dags/*.py`` over a bare ``from airflow.sdk import dag,
task``, each measured in fresh interpreters (median)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, Context, median, row
from bench.sizes import Sizes
from tests.programs import program


def run(sizes: Sizes, ctx: Context) -> dict[str, Any]:
    dag_files = sorted((ROOT / "dags").glob("*.py"))
    if not _has_airflow_sdk():
        ctx.notes.append("dag parse: skipped, Airflow is not installed")
        return {"skipped": "airflow not installed", "rows": [row("6 DAG parse", "skipped", None, note="Airflow is not installed")]}
    if not dag_files:
        ctx.notes.append("dag parse: skipped, no dags/*.py")
        return {"skipped": "no DAG files", "rows": [row("6 DAG parse", "skipped", None, note="no dags/*.py")]}
    home = ctx.work / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    results: dict[str, Any] = {}
    rows = []
    for path in dag_files:
        samples = []
        for _ in range(sizes.dag_reps):
            proc = subprocess.run(
                [sys.executable, program("dag_parse_cost"), str(path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
            )
            if proc.returncode != 0:
                results[path.name] = {"error": proc.stderr[-2000:]}
                break
            samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if not samples:
            rows.append(row("6 DAG parse", f"{path.name}", None, target="<= 100 ms", met=False, note="import failed"))
            continue
        dag_ms = median([s["dag_s"] for s in samples]) * 1000
        bare_ms = median([s["bare_s"] for s in samples]) * 1000
        results[path.name] = {"samples": samples, "dag_ms": dag_ms, "bare_ms": bare_ms}
        rows.append(
            row(
                "6 DAG parse",
                f"import {path.name} over bare airflow.sdk",
                round(dag_ms, 1),
                "ms",
                target="<= 100 ms",
                met=dag_ms <= 100,
                note=f"bare airflow.sdk import {bare_ms:.0f} ms",
            )
        )
    results["rows"] = rows
    return results


def _has_airflow_sdk() -> bool:
    """Whether ``airflow.sdk`` is installed, without importing ``airflow``: its import configures
    logging for the whole process (the later scenarios' log lines would go to stdout in its format)."""
    spec = importlib.util.find_spec("airflow")
    return spec is not None and any((Path(p) / "sdk").is_dir() for p in spec.submodule_search_locations or ())
