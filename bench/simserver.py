"""``python -m bench.simserver``: the API simulator in its own process, clock frozen, bodies pre-built.

Prints ``READY <base_url>`` once it serves, then serves until terminated.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import datetime

from nugen_etl.simulator import SimulatorState, serve


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--accounts", type=int, required=True)
    p.add_argument("--models", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--start", required=True)
    p.add_argument("--at", required=True)
    a = p.parse_args()
    state = SimulatorState(a.seed, a.accounts, models=a.models, latency_ms=a.latency_ms, start=datetime.fromisoformat(a.start))
    at = datetime.fromisoformat(a.at)
    state.set_time(at)
    for account_id in state.account_ids:  # build every body now, so no request pays for it
        if state.specs(account_id):
            state.body_at(account_id, at)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with serve(state) as server:
        print(f"READY {server.base_url}", flush=True)
        signal.pause()


if __name__ == "__main__":
    main()
