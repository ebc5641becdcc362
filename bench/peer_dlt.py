"""``python -m bench.peer_dlt ARGS_JSON``: the peer scenario's dlt pipeline, in its own process.

Written as a new dlt user would: one REST resource per account yielding the answer's models, merged
into DuckDB on (account_id, id). Prints one JSON line: the wall time and the models in the table.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def main() -> None:
    import dlt
    import duckdb
    from dlt.sources.helpers import requests

    args = json.loads(sys.argv[1])
    folder = Path(args["folder"])

    def account_models(account_id: str, key: str) -> Any:
        @dlt.resource(name="aligned_models", primary_key=("account_id", "id"), write_disposition="merge")
        def models() -> Iterator[dict[str, Any]]:
            answer = requests.get(f"{args['base_url']}/api/v3/models/aligned", headers={"Authorization": f"Bearer {key}"}, timeout=30)
            if answer.status_code == 404:
                return
            answer.raise_for_status()
            for model in answer.json()["domain_aligned_models"]:
                yield {**model, "account_id": account_id}

        return models()

    database = folder / "dlt.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="nugen_peer",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="nugen",
        pipelines_dir=str(folder / "pipelines"),
    )
    started = time.perf_counter()
    pipeline.run([account_models(a, k) for a, k in args["keys"].items()])
    wall = time.perf_counter() - started
    with duckdb.connect(str(database), read_only=True) as con:
        ((rows,),) = con.execute("SELECT count(*) FROM nugen.aligned_models").fetchall()
    print(json.dumps({"wall_s": wall, "rows": int(rows)}), flush=True)


if __name__ == "__main__":
    main()
