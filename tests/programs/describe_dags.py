"""Parse the DAG folder with Airflow's DagBag and print what it holds (``DESCRIBE {json}``)."""

import json

from airflow.dag_processing.dagbag import DagBag


def main() -> None:
    bag = DagBag(collect_dags=True)
    out: dict = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        out["dags"][dag_id] = {
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "pool": t.pool,
                    "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                    "backoff": bool(t.retry_exponential_backoff),
                    "outlets": sorted(a.name for a in t.outlets),
                }
                for t in dag.tasks
            },
            "timetable": type(dag.timetable).__name__,
            "summary": getattr(dag.timetable, "expression", None),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "params": sorted(dag.params.keys()),
        }
    print("DESCRIBE " + json.dumps(out))


if __name__ == "__main__":
    main()
