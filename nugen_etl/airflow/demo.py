"""Airflow Connections and the accounts Variable for the bundled simulator (the compose stack's demo).

    python -m nugen_etl.airflow.demo --base-url http://nugen-api:8080 --seed 7 --accounts 5 \\
        --connections /tmp/nugen-connections.json > /tmp/nugen-accounts.json
    airflow connections import --overwrite /tmp/nugen-connections.json
    airflow variables set nugen_accounts "$(cat /tmp/nugen-accounts.json)"

The simulator's keys are a pure function of its seed and account id (``SimulatorState.api_key``), so
the same ``--seed``/``--accounts`` as ``nugen-etl simulate-api`` give the keys it accepts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def simulator_connections(base_url: str, *, seed: int, accounts: int) -> tuple[dict[str, Any], list[str]]:
    """(``airflow connections import`` document: one ``nugen_<id>`` per account, the account ids)."""
    from ..simulator import SimulatorState

    state = SimulatorState(seed=seed, accounts=accounts)
    connections = {
        f"nugen_{a}": {
            "conn_type": "http",
            "host": base_url.rstrip("/"),
            "password": state.api_key(a),
            "description": f"nugen-etl simulator key of {a} (seed {seed})",
        }
        for a in state.account_ids
    }
    return connections, list(state.account_ids)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nugen_etl.airflow.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the simulator as the workers reach it")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument(
        "--connections", required=True, metavar="FILE", help="write the Connections here (they hold keys: keep the file private)"
    )
    args = parser.parse_args(argv)
    connections, ids = simulator_connections(args.base_url, seed=args.seed, accounts=args.accounts)
    path = Path(args.connections)
    path.touch(mode=0o600)
    path.write_text(json.dumps(connections, indent=2), encoding="utf-8")
    print(json.dumps(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
