"""The nugen-etl benchmark suite (issue 6): ``python -m bench [--quick] [--scenarios ...] [--out DIR]``.

Scenarios live one per module (``fanout``, ``throughput``, ``rebuild``, ``flat_cost``, ``memory``,
``dag_parse``, ``lake``, ``bi``); each takes the run's ``Sizes`` and a ``Context`` and returns a result dict with a
``rows`` list for the Markdown table. Benchmarks measure and never assert: a figure that misses its
target is reported as such. Comparisons are ratios measured within one run; times are medians.
"""

from __future__ import annotations

from bench.runner import SCENARIOS, run_suite

__all__ = ["SCENARIOS", "run_suite"]
