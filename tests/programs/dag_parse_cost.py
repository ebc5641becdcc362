"""Import one DAG file over a bare ``airflow.sdk`` import; print, as JSON, both times and the heavy
modules the DAG file loaded (a DAG file must parse without the pipeline's libraries)."""

import importlib.util
import json
import sys
import time

HEAVY = ("nugen_etl", "pandas", "pyarrow", "duckdb", "httpx", "psycopg", "deltalake")


def main(path: str) -> None:
    t0 = time.perf_counter()
    from airflow.sdk import dag, task  # noqa: F401 - the bare import the DAG's cost is measured over

    t1 = time.perf_counter()
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("dag_under_test", path)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    t2 = time.perf_counter()
    heavy = sorted(m for m in HEAVY if m in sys.modules and m not in before)
    print(json.dumps({"bare_s": t1 - t0, "dag_s": t2 - t1, "heavy": heavy}))


if __name__ == "__main__":
    main(sys.argv[1])
