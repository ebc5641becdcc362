"""Import every module of the package and run the CLI with Airflow blocked; print ``IMPORTED <n>``."""

import importlib
import pkgutil
import sys


class _BlockAirflow:
    def find_spec(self, name, path=None, target=None):  # the meta path finder protocol
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError("airflow is blocked in this test")


def main() -> None:
    sys.meta_path.insert(0, _BlockAirflow())
    import nugen_etl
    from nugen_etl.cli import main as cli

    names = [m.name for m in pkgutil.walk_packages(nugen_etl.__path__, "nugen_etl.") if m.name != "nugen_etl.__main__"]
    for name in names:
        importlib.import_module(name)
    try:
        cli(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules)
    print("IMPORTED", len(names))


if __name__ == "__main__":
    main()
