"""A local simulator of the vendor API, for tests, the demo, the compose stack and benchmarks.

``SimulatorState`` holds accounts, keys, the simulated clock and fault queues; ``serve`` runs it
over real HTTP in a background thread, ``run_forever`` in the foreground. The deterministic
payload formulas are documented in ``nugen_etl.simulator.catalog``.
"""

from __future__ import annotations

from nugen_etl.simulator.faults import Fault
from nugen_etl.simulator.server import API_PATH, RunningServer, run_forever, serve
from nugen_etl.simulator.state import SimulatorState

__all__ = ["API_PATH", "Fault", "RunningServer", "SimulatorState", "run_forever", "serve"]
