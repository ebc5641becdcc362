"""What the DAGs' tasks do: thin adapters from an Airflow task context to ``nugen_etl.pipeline``.

    plan            -> list[list[str]]   batches of account ids (Variable ``nugen_accounts`` or the TOML)
    snapshot_batch  -> dict              one batch into the run's slot: live ``run_snapshot`` when the slot
                                         is recent, else ``replay_slot`` (raw archive or ``not_observed``)
    publish         -> dict              the slot's outcomes, data-quality checks, asset event extras
    rebuild         -> dict              ``pipeline.backfill`` over [from, to]
    compact_lake    -> dict              ``pipeline.compact``: closed days of the Delta lake, then vacuum

Every function takes the task context and reads settings, Variables and Connections itself, at
run time: nothing here runs when a DAG file is parsed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import NugenEtlError
from ..records import Outcome
from ..slots import parse_day, utcnow
from ..summary import RunSummary
from .runs import batches, is_past, run_slot
from .settings import MAX_MAP_LENGTH, DagSettings

if TYPE_CHECKING:  # the DAG files import this module: nothing heavy at import time
    from ..storage import Storage
    from ..warehouse import Warehouse
from .sources import account_connection_ids, airflow_lookups, build_config, list_account_ids, open_task_storage

log = logging.getLogger(__name__)

NOT_RETRIABLE = {str(Outcome.AUTH_FAILED)}
NO_KEY = "no API key"
_MAX_NAMED = 20


class BatchFailed(NugenEtlError):
    """Some accounts of a batch failed; the others are written. Retried by Airflow."""


def plan(context: Mapping[str, Any]) -> list[list[str]]:
    """The configured accounts in batches of ``NUGEN_BATCH_SIZE`` (at most ``max_map_length`` batches)."""
    settings = DagSettings.from_environ(os.environ)
    get_variable, _ = airflow_lookups()
    ids = list_account_ids(settings, get_variable)
    planned = batches(ids, settings.batch_size, max_batches=MAX_MAP_LENGTH)
    _prepare_lake()
    log.info("%d accounts in %d batches of up to %d", len(ids), len(planned), len(planned[0]) if planned else 0)
    return planned


def _prepare_lake() -> None:
    """Create the lake's tables before the mapped batches write them at once."""
    from ..sinks.lake import open_lake

    config = _config_without_keys()
    try:
        open_lake(open_task_storage(config, airflow_lookups()[1])).ensure_tables()
    except Exception as exc:  # noqa: BLE001 - each batch reports a lake that cannot be written, per account
        log.warning("cannot prepare the lake at %s: %s: %s", config.storage_url, type(exc).__name__, exc)


def snapshot_batch(account_ids: Sequence[str], context: Mapping[str, Any]) -> dict[str, Any]:
    """Snapshot one batch into the run's slot; raise after writing everything if an account failed.

    A recent slot calls the API, skipping accounts already recorded ok/empty for it (a retry, a
    cleared task or a second run of the interval refetches only what is missing). A slot older
    than the lateness never calls the API: the raw archive is replayed, or ``not_observed`` recorded.
    """
    from ..pipeline import replay_slot, run_snapshot
    from ..runtime import use_system_allocator_for_arrow

    use_system_allocator_for_arrow()
    settings = DagSettings.from_environ(os.environ)
    get_variable, get_connection = airflow_lookups()
    config = build_config(settings, get_variable=get_variable, get_connection=get_connection, accounts=account_ids, with_keys=False)
    slot = run_slot(context, config.granularity)
    lateness = settings.lateness or 2 * config.granularity
    storage = open_task_storage(config, get_connection)
    if is_past(slot, now=utcnow(), lateness=lateness):
        log.info("slot %s ended more than %s ago: replaying the raw archive, no API calls", slot, lateness)
        summary = replay_slot(config, snapshot_at=slot, accounts=list(account_ids), storage=storage, run_id=_run_id(context))
    else:
        config = build_config(settings, get_variable=get_variable, get_connection=get_connection, accounts=account_ids, with_keys=True)
        keyed = tuple(a for a in config.accounts if a.api_key is not None)
        log.info("slot %s: snapshotting %d accounts from the API", slot, len(keyed))
        summary = run_snapshot(config, snapshot_at=slot, accounts=keyed, skip_succeeded=True, storage=storage, run_id=_run_id(context))
        for account in config.accounts:
            if account.api_key is None:
                summary.record_error(account.id, f"{NO_KEY}: no Connection {' / '.join(account_connection_ids(account.id))}")
    log_summary(summary)
    raise_for_failures(summary)
    return compact(summary)


def publish(context: Mapping[str, Any]) -> dict[str, Any]:
    """Log the slot's outcomes, run the data-quality checks (raise on any problem), fill the asset events."""
    from ..pipeline import open_configured_warehouse
    from ..sinks.pending import PendingJournal
    from .quality import check_slot, overdue_loads, slot_outcomes, slot_row_counts

    config = _config_without_keys()
    slot = run_slot(context, config.granularity)
    _, get_connection = airflow_lookups()
    storage = open_task_storage(config, get_connection)
    with open_configured_warehouse(config) as warehouse:
        warehouse.migrate()
        outcomes = slot_outcomes(warehouse, slot)
        rows = slot_row_counts(warehouse, slot)
        problems = check_slot(warehouse, slot)
        report = write_latest_report(warehouse, storage)
    problems += overdue_loads(PendingJournal(storage), config.warehouse.pending_alert_hours, now=utcnow())
    log.info("slot %s: outcomes %s; rows %s", slot.isoformat(), outcomes, rows)
    if problems:
        for problem in problems:
            log.error("data quality: slot %s: %s", slot.isoformat(), problem)
        raise _fail(f"data-quality checks failed for slot {slot.isoformat()}: " + "; ".join(str(p) for p in problems))
    extra = {"snapshot_at": slot.isoformat(), "outcomes": outcomes, "rows": rows, "storage": config.storage_url, "report": report}
    outlet_events = context.get("outlet_events")
    task = context.get("task")
    if outlet_events is not None and task is not None:
        for asset in getattr(task, "outlets", []):
            outlet_events[asset].extra = {**extra, "dataset": asset.name}
    return extra


REPORT_KEY = "reports/latest.html"  # under the storage root: the latest HTML report, replaced by each publish


def write_latest_report(warehouse: Warehouse, storage: Storage) -> str | None:
    """Write the HTML report of the last 30 observed days to ``REPORT_KEY``; its key, or None when it could
    not be rendered or written (logged: the report is a by-product, the slot's data is already loaded)."""
    from ..html_report import build_report

    try:
        storage.write_bytes_atomic(REPORT_KEY, build_report(warehouse, now=utcnow()).encode())
    except Exception as exc:  # noqa: BLE001 - never fails the run
        log.warning("the HTML report was not written (%s: %s); the run goes on", type(exc).__name__, exc)
        return None
    return REPORT_KEY


def rebuild(params: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``nugen-etl backfill`` from the rebuild DAG's params: from, to (UTC days), accounts (empty: all)."""
    from ..pipeline import backfill
    from ..runtime import use_system_allocator_for_arrow

    use_system_allocator_for_arrow()
    first, last = parse_day(str(params.get("from") or ""), "from"), parse_day(str(params.get("to") or ""), "to")
    config = _config_without_keys()
    wanted = list(params.get("accounts") or [])
    accounts = [a.id for a in config.select_accounts(wanted)] if wanted else [a.id for a in config.accounts]
    summary = backfill(
        config,
        first=first,
        last=last,
        accounts=accounts,
        storage=open_task_storage(config, airflow_lookups()[1]),
        run_id=_run_id(context or {}),
    )
    log_summary(summary)
    raise_for_failures(summary)
    return compact(summary)


def compact_lake(context: Mapping[str, Any]) -> dict[str, Any]:
    """``nugen-etl compact``: every closed day not compacted since it last changed, then vacuum."""
    from ..pipeline import compact

    config = _config_without_keys()
    report = compact(config, storage=open_task_storage(config, airflow_lookups()[1]), run_id=_run_id(context))
    log.info(
        "compacted %d day(s): %s; vacuum deleted %s",
        len(report.days),
        ", ".join(d.isoformat() for d in report.days) or "none due",
        report.vacuumed,
    )
    return report.to_json()


def _run_id(context: Mapping[str, Any]) -> str | None:
    """The Airflow run id, recorded in the lake's commit metadata."""
    run_id = context.get("run_id")
    return f"airflow:{run_id}" if run_id else None


def log_summary(summary: RunSummary) -> None:
    counts = ", ".join(f"{n} {o}" for o, n in sorted(summary.outcomes.items())) or "nothing to do"
    log.info(
        "nugen-etl %s %s: %s; %d model rows; %d skipped (already recorded) in %.1fs",
        summary.command,
        summary.snapshot_at.isoformat() if summary.snapshot_at else "",
        counts,
        sum(r.model_count for r in summary.runs),
        len(summary.skipped),
        summary.duration_s,
    )
    for account_id in summary.failed_accounts:
        log.warning("failed: %s: %s", account_id, _reason(summary, account_id))


def raise_for_failures(summary: RunSummary) -> None:
    """Raise when some accounts failed: ``AirflowFailException`` (no retry) when none of them can
    succeed later (rejected key, missing key), else ``BatchFailed`` (Airflow retries it)."""
    failed = summary.failed_accounts
    if not failed:
        mine = {r.account_id for r in summary.runs} | set(summary.skipped)
        pending = set(summary.pending) | {
            a
            for e in summary.backlog
            if e["snapshot_at"] == (summary.snapshot_at.isoformat() if summary.snapshot_at else None)
            for a in e["accounts"]
            if a in mine
        }
        if pending:  # archived and in the lake: the retry skips their fetch and loads them first
            raise BatchFailed(
                f"{len(pending)} account(s) archived and in the lake, warehouse load pending "
                f"({next(iter(summary.pending.values()), 'the warehouse is still unavailable')}); "
                "a retry calls the API for none of them and loads them from the raw archive"
            )
        return
    outcomes = {r.account_id: str(r.outcome) for r in summary.runs}
    retriable = [a for a in failed if _retriable(summary.errors.get(a), outcomes.get(a))]
    named = ", ".join(f"{a} ({outcomes.get(a) or 'error'}: {_reason(summary, a)})" for a in failed[:_MAX_NAMED])
    more = f" and {len(failed) - _MAX_NAMED} more" if len(failed) > _MAX_NAMED else ""
    message = (
        f"{len(failed)} of {len(summary.runs) + len(summary.skipped)} accounts failed "
        f"(the others are written; see nugen.account_runs): {named}{more}"
    )
    if retriable:
        raise BatchFailed(message)
    raise _fail(message + " — not retried: a retry cannot fix a rejected or missing key")


def compact(summary: RunSummary) -> dict[str, Any]:
    """The summary without per-account rows: small enough for XCom at any batch size."""
    doc = summary.to_json()
    doc.pop("accounts")
    doc["failed_accounts"] = summary.failed_accounts
    return doc


def _config_without_keys() -> Config:
    settings = DagSettings.from_environ(os.environ)
    get_variable, get_connection = airflow_lookups()
    return build_config(settings, get_variable=get_variable, get_connection=get_connection, with_keys=False)


def _retriable(error: str | None, outcome: str | None) -> bool:
    if error is not None:
        return not error.startswith(NO_KEY)
    return outcome not in NOT_RETRIABLE


def _reason(summary: RunSummary, account_id: str) -> str:
    return summary.errors.get(account_id) or next((r.error or "" for r in reversed(summary.runs) if r.account_id == account_id), "")


def _fail(message: str) -> Exception:
    """A task failure Airflow does not retry."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


__all__ = ["BatchFailed", "compact", "compact_lake", "plan", "publish", "raise_for_failures", "rebuild", "snapshot_batch"]
