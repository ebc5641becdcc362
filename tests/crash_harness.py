"""Test-only: run the ``nugen-etl`` command line and SIGKILL the process at a chosen point.

    NUGEN_TEST_CRASH_AT=<point>:<n> python tests/crash_harness.py run --config ... --at ...

The n-th time (1-based) ``<point>`` is reached, the process kills itself with SIGKILL: no
``finally``, no ``atexit``, no flush -- what a power cut or the OOM killer does. Points:

    raw-partial            a raw archive file half written (its temporary file cut to half), not renamed
    raw-before-rename      a raw archive file fully written aside, not yet renamed into place
    raw-after-rename       right after a raw archive file was renamed into place
    parquet-partial        a Parquet file half written aside, not renamed
    parquet-before-rename  a Parquet file fully written aside, not yet renamed
    parquet-after-rename   right after a Parquet file was renamed into place
    warehouse-<k>          inside the n-th warehouse load transaction, after its first k statements
                           ("warehouse-8" with the 8 statements of a load: everything done but COMMIT)

``NUGEN_TEST_DUCKDB_BUSY_S=<seconds>`` shortens how long a DuckDB warehouse waits for another
process's lock (10 s in production) so the "warehouse busy" path can be tested quickly.

This lives in the tests, not in the package: production code carries no crash hooks. It patches
``os.replace`` (the rename of ``nugen_etl.files.atomic_write``) and the load statements both warehouse
engines iterate over inside their transaction.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

ENV = "NUGEN_TEST_CRASH_AT"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    point, _, nth = spec.rpartition(":")
    target = int(nth)
    seen = 0

    def reached() -> bool:
        nonlocal seen
        seen += 1
        return seen == target

    if point.startswith(("raw-", "parquet-")):
        kind, when = point.split("-", 1)
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            name = os.fspath(dst)
            ours = f"{os.sep}raw{os.sep}" in name if kind == "raw" else name.endswith(".parquet")
            if ours and when in ("partial", "before-rename") and reached():
                if when == "partial":
                    os.truncate(src, os.path.getsize(src) // 2)
                _die()
            result = real_replace(src, dst, *args, **kwargs)
            if ours and when == "after-rename" and reached():
                _die()
            return result

        os.replace = replace
    elif point.startswith("warehouse-"):
        after = int(point.removeprefix("warehouse-"))
        from nugen_etl.warehouse import base, duckdb, postgres

        real_statements = base.load_statements

        def statements() -> Iterator[str] | list[str]:
            stmts = real_statements()
            if not reached():
                return stmts

            def killing() -> Iterator[str]:
                for i, statement in enumerate(stmts):
                    if i == after:
                        _die()
                    yield statement
                _die()  # all statements executed, COMMIT not yet sent

            return killing()

        duckdb.load_statements = statements  # type: ignore[assignment]
        postgres.load_statements = statements  # type: ignore[assignment]
    else:
        raise SystemExit(f"{ENV}: unknown crash point {point!r}")


if __name__ == "__main__":
    if os.environ.get(ENV):
        install(os.environ[ENV])
    if os.environ.get("NUGEN_TEST_DUCKDB_BUSY_S"):
        from nugen_etl.warehouse.duckdb import DuckDBWarehouse

        DuckDBWarehouse.__init__.__kwdefaults__["busy_timeout_s"] = float(os.environ["NUGEN_TEST_DUCKDB_BUSY_S"])
    from nugen_etl.cli import main

    sys.exit(main(sys.argv[1:]))
