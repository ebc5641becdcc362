"""Load three slots into a DuckDB file in a bulk session, then SIGKILL this process before the
session's closing checkpoint. Run as ``python -m tests.programs.killed_bulk_session FILE`` from the
repository (it builds its slots with the warehouse tests' helpers)."""

import os
import signal
import sys

from nugen_etl.warehouse.duckdb import DuckDBWarehouse
from tests.test_warehouse import _flattened_slot, at


def main(path: str) -> None:
    wh = DuckDBWarehouse(path)
    wh.migrate()
    with wh.loading_in_bulk():
        for h in range(3):
            wh.load([_flattened_slot("acme", at(3, h))])
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1])
