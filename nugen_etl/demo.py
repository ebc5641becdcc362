"""``nugen-etl demo``: an offline tour on a fresh machine — simulator, several snapshots, a report."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from .config import load_config
from .pipeline import open_configured_warehouse, run_snapshot
from .report import print_report
from .simulator import SimulatorState, serve
from .slots import floor_slot, utcnow

DEMO_SLOTS = 6
REJECTED_ACCOUNT = "acct-rejected"


def key_env_name(account_id: str) -> str:
    return "NUGEN_DEMO_KEY_" + account_id.upper().replace("-", "_").replace(".", "_")


def write_demo_config(folder: Path, base_url: str, account_ids: list[str]) -> Path:
    """A config with every simulator account plus one whose key the simulator rejects."""
    lines = ["# Written by `nugen-etl demo`: the simulator's accounts on a local port.",
             "[api]", f'base_url = "{base_url}"', "timeout_s = 10", "max_concurrency = 8", "deadline_s = 30", "",
             "[storage]", 'root = "."', "", "[warehouse]", 'url = "duckdb:///warehouse.duckdb"', ""]
    for account_id in [*account_ids, REJECTED_ACCOUNT]:
        lines += ["[[accounts]]", f'id = "{account_id}"', f'api_key_env = "{key_env_name(account_id)}"', ""]
    path = folder / "nugen-demo.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_demo(folder: Path, *, slots: int = DEMO_SLOTS, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    last_slot = floor_slot(utcnow(), timedelta(hours=1))
    first_slot = last_slot - timedelta(hours=slots - 1)
    state = SimulatorState(seed=7, accounts=4, models=4, start=first_slot)
    with serve(state, host="127.0.0.1", port=0) as server:
        config_path = write_demo_config(folder, server.base_url, state.account_ids)
        # The simulator's keys are fake; the demo hands them over the way a scheduler would: env vars.
        environ = {key_env_name(a): state.api_key(a) for a in state.account_ids}
        environ[key_env_name(REJECTED_ACCOUNT)] = "sk-not-a-valid-key"
        config = load_config(config_path, environ=environ)
        print(f"nugen-etl demo: simulator at {server.base_url}, {len(config.accounts)} accounts, "
              f"{slots} hourly slots {first_slot:%Y-%m-%d %H:%M} .. {last_slot:%H:%M} UTC", file=out)
        for n in range(slots):
            slot = first_slot + timedelta(hours=n)
            state.set_time(slot + timedelta(minutes=2))
            summary = run_snapshot(config, snapshot_at=slot)
            counts = ", ".join(f"{c} {o}" for o, c in sorted(summary.outcomes.items()))
            print(f"  slot {slot:%Y-%m-%d %H:%M}: {counts}", file=out)
    assert config.storage_root is not None  # the demo config is always local
    with open_configured_warehouse(config) as warehouse:
        print_report(warehouse, root=config.storage_root, warehouse_url=config.warehouse.url,
                     config_path=config_path, out=out)
    return 0
