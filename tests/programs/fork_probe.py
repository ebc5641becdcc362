"""Import the pipeline, the Airflow tasks and the CLI and open a lake; print whether deltalake got loaded
(``LOADED``) or not (``CLEAN``): a forked Airflow worker must not inherit deltalake's runtime."""

import sys
from pathlib import Path


def main(root: str) -> None:
    import nugen_etl.airflow.tasks  # noqa: F401
    import nugen_etl.cli  # noqa: F401
    import nugen_etl.pipeline  # noqa: F401
    from nugen_etl.sinks.lake import open_lake
    from nugen_etl.storage import LocalStorage

    open_lake(LocalStorage(Path(root)))
    print("LOADED" if "deltalake" in sys.modules else "CLEAN")


if __name__ == "__main__":
    main(sys.argv[1])
