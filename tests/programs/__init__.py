"""Programs the tests (and the benchmarks) run in a fresh interpreter, each a real module: by path
(``python tests/programs/NAME.py``) where the child has its own working folder and environment, or
as ``python -m tests.programs.NAME`` from the repository when it imports the tests' helpers."""

from pathlib import Path

PROGRAMS = Path(__file__).parent


def program(name: str) -> str:
    """The path of program ``name``, to pass to ``sys.executable``."""
    return str(PROGRAMS / f"{name}.py")
