"""Hold a DuckDB file open in another process, as a second writer or a BI tool would.

``hold_duckdb.py FILE`` holds it for writing for 30 s; ``--read-only`` holds a read-only connection
that has read ``nugen.model_snapshots`` until standard input closes. Prints ``ready`` once held.
"""

import sys
import time

import duckdb


def main(path: str, read_only: bool) -> None:
    con = duckdb.connect(path, read_only=read_only)
    if read_only:
        con.execute("select count(*) from nugen.model_snapshots").fetchall()
    print("ready", flush=True)
    if read_only:
        sys.stdin.read()
    else:
        time.sleep(30)


if __name__ == "__main__":
    main(sys.argv[1], "--read-only" in sys.argv[2:])
