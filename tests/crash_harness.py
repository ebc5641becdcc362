"""Test-only: run the ``nugen-etl`` command line and SIGKILL the process at a chosen point.

    NUGEN_TEST_CRASH_AT=<point>:<n> python tests/crash_harness.py run --config ... --at ...

The n-th time (1-based) ``<point>`` is reached, the process kills itself with SIGKILL: no
``finally``, no ``atexit``, no flush -- what a power cut or the OOM killer does. Points:

    raw-partial            a raw archive file half written (its temporary file cut to half), not renamed
    raw-before-rename      a raw archive file fully written aside, not yet renamed into place
    raw-after-rename       right after a raw archive file was renamed into place
    lake-before-commit     right before the n-th Delta write (``deltalake.write_deltalake``) starts
    lake-files-written     the n-th Delta write's data files are in the table folder, its commit is
                           not made (delta-rs wrote them for real; see below)
    lake-after-commit      right after the n-th Delta write returned, its commit made (n=1: a batch's
                           model_snapshots committed, its model_metrics not -- what a reader can
                           see between the two commits)
    warehouse-<k>          inside the n-th warehouse load transaction, after its first k statements
                           ("warehouse-8" with the 8 statements of a load: everything done but COMMIT)

The lake writes one commit per table and batch: model_snapshots and model_metrics at once (two
threads, either may start first), then account_runs. Once the tables exist, writes 1-2 are the
first batch's data tables, 3 its runs, 4-5 the second batch's data tables, and so on (a batch whose
accounts all failed commits account_runs only).

``lake-files-written`` runs the real write with a folder squatting on the name of the table's next
log entry (``_delta_log/<version + 1>.json``): delta-rs writes the data files, then its
put-if-absent of the commit finds the name taken -- what losing the race for a version looks like
-- and the write fails without a commit. The folder is removed and the process killed, leaving
real, never-committed data files. The harness checks that new data files did appear and that no
version was committed, and exits with status 3 (not a SIGKILL) if not, so the test fails loudly.

``NUGEN_TEST_DUCKDB_BUSY_S=<seconds>`` shortens how long a DuckDB warehouse waits for another
process's lock (10 s in production) so the "warehouse busy" path can be tested quickly.

This lives in the tests, not in the package: production code carries no crash hooks. It patches
``os.replace`` (the rename of ``nugen_etl.storage.local.atomic_write``), ``deltalake.write_deltalake`` (which
``nugen_etl.sinks.lake`` looks up at each write) and the load statements both warehouse engines iterate
over inside their transaction.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ENV = "NUGEN_TEST_CRASH_AT"
LOG_ENTRY = re.compile(r"\d{20}\.json")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fail(message: str) -> None:
    """The point was reached but could not be staged as described: exit without a SIGKILL."""
    print(f"{ENV}: {message}", file=sys.stderr, flush=True)
    os._exit(3)


def table_folder(table_or_uri: Any) -> Path:
    """The local folder of a DeltaTable or table URI (``file:///...`` or a plain path)."""
    uri = getattr(table_or_uri, "table_uri", table_or_uri)
    uri = os.fspath(uri) if isinstance(uri, os.PathLike) else str(uri)
    parts = urlsplit(uri)
    if parts.scheme not in ("", "file"):
        _fail(f"lake crash points need a local table, not {uri!r}")
    return Path(unquote(parts.path) if parts.scheme == "file" else uri)


def data_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts}


def last_version(folder: Path) -> int:
    log = folder / "_delta_log"
    return max((int(p.name[:20]) for p in log.iterdir() if LOG_ENTRY.fullmatch(p.name) and p.is_file()), default=-1)


def _install_lake(when: str, reached: Any) -> None:
    import deltalake

    real_write = deltalake.write_deltalake

    def write_deltalake(table_or_uri, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not reached():
            return real_write(table_or_uri, data, *args, **kwargs)
        if when == "before-commit":
            _die()
        if when == "after-commit":
            real_write(table_or_uri, data, *args, **kwargs)
            _die()
        folder = table_folder(table_or_uri)
        before_files, version = data_files(folder), last_version(folder)
        squatter = folder / "_delta_log" / f"{version + 1:020d}.json"
        squatter.mkdir()
        try:
            real_write(table_or_uri, data, *args, **kwargs)
            committed = True
        except Exception:  # noqa: BLE001 - expected: the commit's name is taken
            committed = False
        finally:
            squatter.rmdir()
        if committed:
            _fail(f"the write to {folder} succeeded although {squatter.name} was taken")
        if last_version(folder) != version:
            _fail(f"a version of {folder} was committed")
        if not data_files(folder) - before_files:
            _fail(f"the write to {folder} left no data file (no rows to write?): choose another n")
        _die()

    deltalake.write_deltalake = write_deltalake


def install(spec: str) -> None:
    point, _, nth = spec.rpartition(":")
    target = int(nth)
    seen = 0

    def reached() -> bool:
        nonlocal seen
        seen += 1
        return seen == target

    if point.startswith("raw-"):
        when = point.removeprefix("raw-")
        if when not in ("partial", "before-rename", "after-rename"):
            raise SystemExit(f"{ENV}: unknown crash point {point!r}")
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            ours = f"{os.sep}raw{os.sep}" in os.fspath(dst)
            if ours and when in ("partial", "before-rename") and reached():
                if when == "partial":
                    os.truncate(src, os.path.getsize(src) // 2)
                _die()
            result = real_replace(src, dst, *args, **kwargs)
            if ours and when == "after-rename" and reached():
                _die()
            return result

        os.replace = replace
    elif point in ("lake-before-commit", "lake-files-written", "lake-after-commit"):
        _install_lake(point.removeprefix("lake-"), reached)
    elif point.startswith("warehouse-"):
        after = int(point.removeprefix("warehouse-"))
        from nugen_etl.warehouse import duckdb, load_sql, postgres

        real_statements = load_sql.load_statements

        def statements(batch, **options):  # type: ignore[no-untyped-def]
            stmts = real_statements(batch, **options)
            if not reached():
                return stmts

            def killing():  # type: ignore[no-untyped-def]
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
