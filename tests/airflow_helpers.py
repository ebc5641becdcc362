"""Shared pieces of the Airflow tests: a migrated AIRFLOW_HOME, Connections as AIRFLOW_CONN_* JSON, and
``run_dags`` which runs ``dag.test()`` in a child process (tests/airflow_harness.py) and returns its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parent.parent
DAGS = REPO / "dags"
HARNESS = Path(__file__).resolve().parent / "airflow_harness.py"


def base_env(airflow_home: Path) -> dict[str, str]:
    """This process's environment, minus any Airflow/nugen settings, plus a test AIRFLOW_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "NUGEN_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def init_airflow_home(airflow_home: Path) -> dict[str, str]:
    """Create and migrate a SQLite metadata DB in ``airflow_home`` (once per session, ~4 s)."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = base_env(airflow_home)
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return env


def http_connection(base_url: str, key: str) -> str:
    """An AIRFLOW_CONN_* value (JSON form) for an account: password = key, host = base URL."""
    return json.dumps({"conn_type": "http", "host": base_url, "password": key})


def postgres_connection(url: str) -> str:
    """An AIRFLOW_CONN_* value (JSON form) for the nugen_warehouse Connection from a postgresql:// URL."""
    parts = urlsplit(url)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "login": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "schema": parts.path.lstrip("/"),
        }
    )


def conn_env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


@dataclass(frozen=True)
class DagRunResult:
    dag_id: str
    state: str
    tasks: list[tuple[str, int, str, int]]  # (task_id, map_index, state, try_number)
    data_interval_end: str | None
    asset_events: list[tuple[str, dict]]  # (asset name, event extra) emitted by the run

    def states(self, task_id: str) -> list[str]:
        """States of the task's instances, by map index."""
        return [s for t, _, s, _ in sorted(self.tasks, key=lambda r: r[1]) if t == task_id]

    def tries(self, task_id: str) -> list[int]:
        return [n for t, _, _, n in sorted(self.tasks, key=lambda r: r[1]) if t == task_id]


class AirflowProcess:
    """One child process running tests/airflow_harness.py; ``run`` sends a request and waits for its result.

    Its output (Airflow's and the tasks' logs) goes to ``log_path``, so a failing test can show it.
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [sys.executable, "-u", str(HARNESS)],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def run(self, runs: list[dict[str, Any]], *, env: dict[str, str | None] | None = None) -> list[DagRunResult]:
        """``dag.test()`` each run (``logical_date``: a datetime or None) after applying ``env``."""
        request = {
            "env": env or {},
            "runs": [{**r, "logical_date": r["logical_date"].isoformat() if r.get("logical_date") else None} for r in runs],
        }
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            if line.startswith("RESULT "):
                results = json.loads(line[len("RESULT ") :])
                break
            self._log.write(line)
        else:
            raise AssertionError(f"dag.test harness died (exit {self._proc.wait()}):\n{self.tail()}")
        if results and "import_errors" in results[0]:
            raise AssertionError(f"DAG import errors: {results[0]['import_errors']}")
        return [
            DagRunResult(
                r["dag_id"], r["state"], [tuple(t) for t in r["tasks"]], r["data_interval_end"], [tuple(e) for e in r["asset_events"]]
            )
            for r in results
        ]

    def tail(self, chars: int = 8000) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
