"""The error tree: every public exception nugen-etl defines descends from ``NugenEtlError``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil

import nugen_etl
from nugen_etl.errors import NugenEtlError

# Modules that need an optional extra to import; their exceptions are checked when it is installed.
OPTIONAL = {"nugen_etl.airflow.tasks": "airflow"}


def _exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(nugen_etl.__path__, "nugen_etl."):
        if info.name.endswith("__main__") or (info.name in OPTIONAL and importlib.util.find_spec(OPTIONAL[info.name]) is None):
            continue
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == info.name and issubclass(obj, BaseException) and not name.startswith("_"):
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_public_exception_descends_from_the_root() -> None:
    found = _exceptions()
    assert "nugen_etl.airflow.tasks.BatchFailed" in found
    assert "nugen_etl.storage.base.StorageError" in found
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, NugenEtlError))
    assert outside == []


def test_the_tree_in_the_docstring_names_every_public_exception() -> None:
    import nugen_etl.errors as errors

    for name in {cls.__name__ for cls in _exceptions().values()}:
        assert f"+-- {name} " in errors.__doc__ or name == "NugenEtlError", name
