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
from .warehouse import Warehouse

DEMO_SLOTS = 8
DEMO_STEP = timedelta(hours=12)  # the slots run twice a day, so the report's daily charts have a few days
REJECTED_ACCOUNT = "acct-rejected"
# One model name holds markup: the HTML report shows it as text.
MARKUP_NAME = '<script>alert("nugen")</script> support_model'
REPORT_NAME = "report.html"


def key_env_name(account_id: str) -> str:
    return "NUGEN_DEMO_KEY_" + account_id.upper().replace("-", "_").replace(".", "_")


def write_demo_config(folder: Path, base_url: str, account_ids: list[str]) -> Path:
    """A config with every simulator account plus one whose key the simulator rejects."""
    lines = [
        "# Written by `nugen-etl demo`: the simulator's accounts on a local port.",
        "[api]",
        f'base_url = "{base_url}"',
        "timeout_s = 10",
        "max_concurrency = 8",
        "deadline_s = 30",
        "",
        "[storage]",
        'root = "."',
        "",
        "[warehouse]",
        'url = "duckdb:///warehouse.duckdb"',
        "",
    ]
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
    first_slot = last_slot - DEMO_STEP * (slots - 1)
    state = SimulatorState(seed=7, accounts=4, models=4, start=first_slot, renamed={"acct-0001": MARKUP_NAME})
    with serve(state, host="127.0.0.1", port=0) as server:
        config_path = write_demo_config(folder, server.base_url, state.account_ids)
        # The simulator's keys are fake; the demo hands them over the way a scheduler would: env vars.
        environ = {key_env_name(a): state.api_key(a) for a in state.account_ids}
        environ[key_env_name(REJECTED_ACCOUNT)] = "sk-not-a-valid-key"
        config = load_config(config_path, environ=environ)
        print(
            f"nugen-etl demo: simulator at {server.base_url}, {len(config.accounts)} accounts, "
            f"{slots} slots {DEMO_STEP} apart, {first_slot:%Y-%m-%d %H:%M} .. {last_slot:%Y-%m-%d %H:%M} UTC",
            file=out,
        )
        for n in range(slots):
            slot = first_slot + DEMO_STEP * n
            state.set_time(slot + timedelta(minutes=2))
            summary = run_snapshot(config, snapshot_at=slot)
            counts = ", ".join(f"{c} {o}" for o, c in sorted(summary.outcomes.items()))
            print(f"  slot {slot:%Y-%m-%d %H:%M}: {counts}", file=out)
    assert config.storage_root is not None  # the demo config is always local
    with open_configured_warehouse(config) as warehouse:
        print_report(warehouse, root=config.storage_root, warehouse_url=config.warehouse.url, config_path=config_path, out=out)
        report = _write_html_report(warehouse, folder / REPORT_NAME, out)
    if report is not None:
        print(
            f"\nHTML report     : {report}\n                  (again with: nugen-etl report --config {config_path} --html {report})",
            file=out,
        )
    return 0


def _write_html_report(warehouse: Warehouse, path: Path, out: TextIO) -> Path | None:
    """The demo's HTML report (None, said, when pygal is missing: ``pip install 'nugen-etl[report]'``)."""
    from .errors import NugenEtlError
    from .html_report import build_report
    from .storage.local import atomic_write

    try:
        page = build_report(warehouse, now=utcnow())
    except NugenEtlError as exc:
        print(f"\nHTML report     : not written: {exc}", file=out)
        return None
    atomic_write(path, lambda fh: fh.write(page.encode()), fsync=False)
    return path
