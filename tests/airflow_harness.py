"""Run DAGs with ``dag.test()`` in a process of their own, on request.

    python tests/airflow_harness.py
    stdin, one JSON request per line: {"env": {NAME: value | null}, "runs": [{"dag_id": "...",
                                       "logical_date": "ISO" | null, "conf": {}}]}
    stdout: for each request one line "RESULT " + JSON list with one object per run.

Requests run in order in one process, so Airflow's start-up (~10 s: imports, the in-process
execution API) is paid once; ``env`` changes os.environ before the runs (tasks read Connections,
Variables and NUGEN_* settings from it when they run).

The environment (AIRFLOW_HOME with a migrated metadata DB, AIRFLOW__CORE__DAGS_FOLDER, AIRFLOW_CONN_*,
AIRFLOW_VAR_*, NUGEN_*) comes from the caller (tests/airflow_helpers.py). Airflow runs in this child
process so its logging and settings never touch the pytest process.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime


def main() -> int:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(collect_dags=True)
    for line in sys.stdin:
        request = json.loads(line)
        for name, value in (request.get("env") or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        results = []
        if bag.import_errors:
            results.append({"import_errors": bag.import_errors})
        for run in request.get("runs", []):
            dag = bag.get_dag(run["dag_id"])
            logical_date = datetime.fromisoformat(run["logical_date"]) if run.get("logical_date") else None
            dag_run = dag.test(logical_date=logical_date, run_conf=run.get("conf"))
            with create_session() as session:
                tis = sorted((ti.task_id, ti.map_index, str(ti.state), ti.try_number) for ti in dag_run.get_task_instances(session=session))
                events = session.execute(
                    select(AssetModel.name, AssetEvent.extra)
                    .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                    .where(AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id)
                ).all()
            end = dag_run.data_interval_end
            results.append(
                {
                    "dag_id": run["dag_id"],
                    "state": str(dag_run.state),
                    "tasks": tis,
                    "data_interval_end": end.isoformat() if end else None,
                    "asset_events": sorted([name, extra] for name, extra in events),
                }
            )
        print("RESULT " + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
