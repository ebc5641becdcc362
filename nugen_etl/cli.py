"""The ``nugen-etl`` command line: parse options, build the pieces, call the library, report.

Exit codes: 0 every account ok/empty; 1 some accounts failed (the rest is written);
2 bad configuration or usage; 3 everything is archived and in the lake but warehouse loads are
pending (the warehouse was busy or down: the next run or ``load-pending`` loads them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, NugenEtlError, WarehouseBusy
from .records import AccountRun
from .slots import floor_slot, parse_day, parse_timestamp, utcnow
from .summary import RunSummary

log = logging.getLogger("nugen_etl")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from .runtime import use_system_allocator_for_arrow  # here, not at the top: `--help` needs no pyarrow

    use_system_allocator_for_arrow()
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"nugen-etl: error: {exc}", file=sys.stderr)
        return 2
    except WarehouseBusy as exc:
        print(f"nugen-etl: warehouse busy: {exc}", file=sys.stderr)
        return 1
    except NugenEtlError as exc:
        print(f"nugen-etl: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nugen-etl: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nugen-etl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nugen-etl {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("NUGEN_ETL_LOG_LEVEL", "warning"),
        choices=["debug", "info", "warning", "error"],
        help="default: warning",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="snapshot every configured account (or the named ones) now")
    _config_arg(run)
    run.add_argument("--at", help="snapshot slot, ISO 8601 (UTC if no offset); default: now, floored")
    run.add_argument("--account", action="append", metavar="ID", help="only this account (repeatable)")
    run.add_argument(
        "--force-slot", action="store_true", help="record the current answer under --at even if it is far from now (simulations)"
    )
    _output_args(run)
    run.set_defaults(handler=cmd_run)

    bf = sub.add_parser("backfill", help="rebuild lake and warehouse rows from the raw archive (no API calls)")
    _config_arg(bf)
    bf.add_argument("--from", dest="first", required=True, metavar="DATE", help="first UTC day, YYYY-MM-DD")
    bf.add_argument("--to", dest="last", required=True, metavar="DATE", help="last UTC day (inclusive)")
    bf.add_argument("--account", action="append", metavar="ID", help="only this account (repeatable)")
    _output_args(bf)
    bf.set_defaults(handler=cmd_backfill)

    lp = sub.add_parser(
        "load-pending", help="load the slots whose warehouse load was deferred (warehouse busy or down during a run) from the raw archive"
    )
    _config_arg(lp)
    lp.add_argument("--max-slots", type=int, metavar="N", help="at most this many slots, oldest first (default: all)")
    _output_args(lp)
    lp.set_defaults(handler=cmd_load_pending)

    cp = sub.add_parser("compact", help="compact closed days of the Delta lake, then vacuum old files")
    _config_arg(cp)
    cp.add_argument(
        "--day", metavar="DATE", help="compact this UTC day only (default: every closed day not compacted since it last changed)"
    )
    cp.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    cp.set_defaults(handler=cmd_compact)

    up = sub.add_parser(
        "upgrade-lake", help="move nugen-etl 0.1's per-slot Parquet folders aside and rebuild the Delta lake from the raw archive"
    )
    _config_arg(up)
    _output_args(up)
    up.set_defaults(handler=cmd_upgrade_lake)

    mig = sub.add_parser("migrate", help="create or upgrade the warehouse tables and views")
    _config_arg(mig)
    mig.add_argument(
        "--rebuild-rollups",
        action="store_true",
        help="then rebuild the rollups the BI views read from model_snapshots and account_runs, "
        "in one transaction (after rows were loaded into those tables by other means)",
    )
    mig.set_defaults(handler=cmd_migrate)

    sim = sub.add_parser("simulate-api", help="serve a local simulator of the vendor API")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--accounts", type=int, default=5)
    sim.add_argument("--models", type=int, default=4)
    sim.add_argument("--latency-ms", type=float, default=0.0)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--fault-rate", type=float, default=0.0, help="share of answers that are 429/503")
    sim.set_defaults(handler=cmd_simulate)

    rep = sub.add_parser("report", help="write a self-contained HTML report of usage and accuracy trends (reads the warehouse views only)")
    _config_arg(rep)
    rep.add_argument("--html", required=True, metavar="PATH", help="the HTML file to write (replaced atomically)")
    rep.add_argument("--from", dest="first", metavar="DATE", help="first UTC day, YYYY-MM-DD (default: 30 days before --to)")
    rep.add_argument("--to", dest="last", metavar="DATE", help="last UTC day (default: the newest observed day)")
    rep.add_argument("--account", action="append", metavar="ID", help="only this account (repeatable)")
    rep.set_defaults(handler=cmd_report)

    demo = sub.add_parser("demo", help="offline demo: simulator + several snapshots + a short report")
    demo.add_argument("--dir", default="./nugen-data", help="where to write everything (default ./nugen-data)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")


def resolve_slot(at: str | None, config: Config, *, force: bool, now: datetime | None = None) -> datetime:
    """The slot for ``run``: --at floored to the granularity, refused when far from now unless forced."""
    now = now or utcnow()
    if at is None:
        return floor_slot(now, config.granularity)
    slot = floor_slot(parse_timestamp(at), config.granularity)
    if not force and abs(slot - floor_slot(now, config.granularity)) > 2 * config.granularity:
        raise ConfigError(
            f"--at {slot.isoformat()} is more than two slots ({2 * config.granularity}) from now: the API "
            "only knows the present. Rebuild past slots from the raw archive with "
            "'nugen-etl backfill --from DATE --to DATE', or pass --force-slot to record the current "
            "answer under that slot anyway."
        )
    return slot


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run_snapshot

    config = load_config(args.config)
    slot = resolve_slot(args.at, config, force=args.force_slot)
    accounts = config.select_accounts(args.account)
    reporter = Reporter(len(accounts), quiet=args.quiet)
    summary = run_snapshot(config, snapshot_at=slot, accounts=accounts, progress=reporter.account_done)
    return reporter.finish(summary, as_json=args.json)


def cmd_report(args: argparse.Namespace) -> int:
    from .html_report import build_report
    from .pipeline import open_configured_warehouse
    from .storage.local import atomic_write

    config = load_config(args.config)
    first = parse_day(args.first, "--from") if args.first else None
    last = parse_day(args.last, "--to") if args.last else None
    with open_configured_warehouse(config) as wh:
        page = build_report(wh, now=utcnow(), first=first, last=last, accounts=args.account)
    path = Path(args.html)
    atomic_write(path, lambda fh: fh.write(page.encode()), fsync=config.fsync)
    print(f"report written to {path}")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from .pipeline import backfill

    config = load_config(args.config)
    first, last = parse_day(args.first, "--from"), parse_day(args.last, "--to")
    accounts = [a.id for a in config.select_accounts(args.account)]
    reporter = Reporter(None, quiet=args.quiet)
    summary = backfill(config, first=first, last=last, accounts=accounts, progress=reporter.account_done)
    return reporter.finish(summary, as_json=args.json)


def cmd_load_pending(args: argparse.Namespace) -> int:
    from .pipeline import load_pending

    config = load_config(args.config)
    reporter = Reporter(None, quiet=args.quiet)
    return reporter.finish(load_pending(config, max_slots=args.max_slots), as_json=args.json)


def cmd_compact(args: argparse.Namespace) -> int:
    from .pipeline import compact

    config = load_config(args.config)
    day = parse_day(args.day, "--day") if args.day else None
    report = compact(config, day=day)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for each in report.days:
            key = each.isoformat()
            print(f"compacted {key}: data files {report.files_before[key]} -> {report.files_after[key]}")
        if not report.days:
            print("no closed day needs compaction")
        print(f"vacuum (retention {config.vacuum_retention_hours:g} h): files deleted {report.vacuumed}")
    return 0


def cmd_upgrade_lake(args: argparse.Namespace) -> int:
    from .pipeline import upgrade_lake

    config = load_config(args.config)
    reporter = Reporter(None, quiet=args.quiet)
    moved, summary = upgrade_lake(config, progress=reporter.account_done)
    if not args.quiet:
        where = ", ".join(f"{config.storage_url}/legacy-parquet/{m}" for m in moved) or "nothing to move"
        print(f"nugen-etl upgrade-lake: old per-slot Parquet folders moved: {where}", file=sys.stderr)
    if summary is None:
        if not args.quiet:
            print("nugen-etl upgrade-lake: the raw archive is empty; nothing to rebuild", file=sys.stderr)
        return 0
    return reporter.finish(summary, as_json=args.json)


def cmd_migrate(args: argparse.Namespace) -> int:
    from .pipeline import open_configured_warehouse

    config = load_config(args.config)
    with open_configured_warehouse(config) as warehouse:
        applied = warehouse.migrate()
        print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
        if args.rebuild_rollups:
            started = time.monotonic()
            warehouse.rebuild_rollups()
            print(f"rollups rebuilt from the snapshots in {time.monotonic() - started:.1f} s")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import SimulatorState, run_forever

    state = SimulatorState(
        seed=args.seed, accounts=args.accounts, models=args.models, latency_ms=args.latency_ms, fault_rate=args.fault_rate
    )
    run_forever(state, args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.dir))


class Reporter:
    """Progress lines on a terminal (stderr), a final summary line, and the --json document."""

    def __init__(self, total: int | None, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.total, self.quiet, self.done = total, quiet, 0
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()

    def account_done(self, run: AccountRun) -> None:
        self.done += 1
        if self.live:
            of = f"/{self.total}" if self.total else ""
            detail = run.error or f"{run.model_count} models"
            print(
                f"[{self.done}{of}] {run.account_id} {run.snapshot_at:%Y-%m-%d %H:%M} {run.outcome}: {detail}", file=self.stream, flush=True
            )

    def finish(self, summary: RunSummary, *, as_json: bool) -> int:
        if as_json:
            print(json.dumps(summary.to_json(), indent=2))
        if not self.quiet:
            counts = ", ".join(f"{n} {o}" for o, n in sorted(summary.outcomes.items())) or "nothing to do"
            print(
                f"nugen-etl {summary.command}: {counts}; {sum(r.model_count for r in summary.runs)} model rows "
                f"in {summary.duration_s:.1f}s",
                file=self.stream,
            )
            for account_id in summary.failed_accounts:
                reason = summary.errors.get(account_id) or next((r.error for r in reversed(summary.runs) if r.account_id == account_id), "")
                print(f"  failed: {account_id}: {reason}", file=self.stream)
            if summary.caught_up:
                print(f"  caught up: {len(summary.caught_up)} pending warehouse load(s)", file=self.stream)
            if summary.pending:
                print(
                    f"  warehouse load pending for {len(summary.pending)} account(s) (archived and in the "
                    f"lake): {next(iter(summary.pending.values()))}",
                    file=self.stream,
                )
        if summary.backlog:  # even when quiet: a load that stays pending must be seen
            overdue = [e for e in summary.backlog if e["overdue"]]
            print(
                f"  pending warehouse loads: {len(summary.backlog)} slot batch(es)"
                f"{f', {len(overdue)} OVERDUE' if overdue else ''}, oldest {summary.backlog[0]['snapshot_at']}; "
                "`nugen-etl load-pending --config FILE` loads them",
                file=self.stream,
            )
        return summary.exit_code
