"""``nugen-etl report --html``: one self-contained HTML file of usage and accuracy trends, read from the
warehouse views only.

The page has no script and makes no request when opened: CSS is inline and each chart is an inline
SVG drawn by pygal (any script pygal adds for its optional tooltips is removed). Every string from
the API is escaped (``html.escape`` here, the XML writer inside the charts). A day without an
observation is a gap in a chart and an empty cell, never a zero.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from . import __version__
from .errors import NugenEtlError
from .slots import day_bounds
from .warehouse import Warehouse

DEFAULT_DAYS = 30  # the period when no --from is given: this many days up to --to
CHART_MODELS = 8  # models drawn per account chart (the most used in the period); the table lists all
TOP_ROWS = 10  # rows of the overview's top lists
RECENT_CHANGES = 20  # status changes listed per account
SVG_NS = "http://www.w3.org/2000/svg"


@dataclass
class AccountData:
    account_id: str
    health: tuple[Any, ...] | None = None
    models: list[tuple[Any, ...]] = field(default_factory=list)  # models_latest rows (see MODEL_COLUMNS)
    usage: dict[str, dict[date, float | None]] = field(default_factory=lambda: defaultdict(dict))
    accuracy: dict[str, dict[date, float | None]] = field(default_factory=lambda: defaultdict(dict))
    changes: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class ReportData:
    first: date
    last: date
    accounts: dict[str, AccountData]
    names: dict[tuple[str, str], str]  # (account, model_key) -> the model's latest name


MODEL_COLUMNS = (
    "model_key",
    "name",
    "status",
    "deployment_status",
    "usage_count",
    "accuracy",
    "is_present",
    "first_seen_at",
    "last_seen_at",
)


def build_report(
    warehouse: Warehouse, *, now: datetime, first: date | None = None, last: date | None = None, accounts: Sequence[str] | None = None
) -> str:
    """The page for [first, last] (default: the ``DEFAULT_DAYS`` days up to the newest observed day, or
    up to ``now``'s day in an empty warehouse). ConfigError when ``last`` is before ``first``."""
    if first is not None and last is not None:
        day_bounds(first, last)
    if not _has_views(warehouse):
        return render(ReportData(first or now.date(), last or now.date(), {}, {}), generated_at=now)
    earliest, latest = _observed_days(warehouse)
    if last is None:
        last = latest or now.date()
        if first is not None and last < first:
            last = first
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
        if earliest is not None and first < earliest <= last:  # a young warehouse: from its first day
            first = earliest
    return render(gather(warehouse, first=first, last=last, accounts=accounts), generated_at=now)


def _has_views(warehouse: Warehouse) -> bool:
    """Whether the warehouse has been migrated (a report never creates or changes anything)."""
    ((count,),) = warehouse.fetch_all(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'nugen' AND table_name = 'account_health'"
    )
    return bool(count > 0)


def _observed_days(warehouse: Warehouse) -> tuple[date | None, date | None]:
    """The first and the newest day any model was observed on (None, None in an empty warehouse)."""
    ((earliest, latest),) = warehouse.fetch_all("SELECT min(day), max(day) FROM nugen.model_usage_daily")
    return cast(date | None, earliest), cast(date | None, latest)


def gather(warehouse: Warehouse, *, first: date, last: date, accounts: Sequence[str] | None = None) -> ReportData:
    """What the report shows, from the views ``account_health``, ``models_latest``, ``model_usage_daily``,
    ``model_accuracy_daily`` and ``model_status_changes``, for the days [first, last] and ``accounts``
    (default: every account the warehouse knows)."""
    start, end = day_bounds(first, last)
    where, params = _accounts_filter(accounts)
    period = [first, last]
    data = ReportData(first, last, {}, {})

    def account(account_id: str) -> AccountData:
        return data.accounts.setdefault(account_id, AccountData(account_id))

    for row in warehouse.fetch_all(
        "SELECT account_id, last_success_at, last_outcome, consecutive_failures, last_run_at, pending_loads "
        f"FROM nugen.account_health WHERE TRUE {where} ORDER BY account_id",
        params,
    ):
        account(row[0]).health = row[1:]
    for account_id in accounts or ():
        account(account_id)
    for row in warehouse.fetch_all(
        f"SELECT account_id, {', '.join(MODEL_COLUMNS)} FROM nugen.models_latest WHERE TRUE {where} "
        "ORDER BY account_id, is_present DESC, usage_count DESC NULLS LAST, model_key",
        params,
    ):
        account(row[0]).models.append(row[1:])
        data.names[row[0], row[1]] = row[2] if row[2] is not None else row[1]
    for account_id, key, day, delta in warehouse.fetch_all(
        f"SELECT account_id, model_key, day, usage_delta FROM nugen.model_usage_daily WHERE day BETWEEN ? AND ? {where}", [*period, *params]
    ):
        account(account_id).usage[key][day] = delta
    for account_id, key, day, value in warehouse.fetch_all(
        f"SELECT account_id, model_key, day, accuracy FROM nugen.model_accuracy_daily WHERE day BETWEEN ? AND ? {where}", [*period, *params]
    ):
        account(account_id).accuracy[key][day] = value
    for row in warehouse.fetch_all(
        "SELECT account_id, model_key, changed_at, from_status, to_status, from_deployment_status, "
        "to_deployment_status FROM nugen.model_status_changes "
        f"WHERE changed_at >= ? AND changed_at < ? {where} ORDER BY changed_at DESC, model_key",
        [start, end, *params],
    ):
        account(row[0]).changes.append(row[1:])
    return data


def _accounts_filter(accounts: Sequence[str] | None) -> tuple[str, list[Any]]:
    if not accounts:
        return "", []
    return f"AND account_id IN ({', '.join('?' for _ in accounts)})", list(accounts)


# --- the numbers the overview shows ---------------------------------------------------------


def usage_growth(data: ReportData) -> list[tuple[str, str, float]]:
    """(account, model_key, sum of usage_delta over the period), largest first; models with no delta left out."""
    rows = [
        (a.account_id, key, sum(v for v in days.values() if v is not None))
        for a in data.accounts.values()
        for key, days in a.usage.items()
        if any(v is not None for v in days.values())
    ]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def accuracy_moves(data: ReportData) -> list[tuple[str, str, date, float, date, float]]:
    """(account, model_key, first day, its accuracy, last day, its accuracy) over the period, largest
    absolute move first; a model needs an accuracy on two days."""
    rows = []
    for a in data.accounts.values():
        for key, days in a.accuracy.items():
            known = sorted((d, v) for d, v in days.items() if v is not None)
            if len(known) >= 2:
                rows.append((a.account_id, key, *known[0], *known[-1]))
    return sorted(rows, key=lambda r: (-abs(r[5] - r[3]), r[0], r[1]))


# --- rendering --------------------------------------------------------------------------------


def render(data: ReportData, *, generated_at: datetime) -> str:
    """The whole page (pure: same data, same page)."""
    days = [data.first + timedelta(days=n) for n in range((data.last - data.first).days + 1)]
    parts = [
        _HEAD.format(title=_e(f"nugen-etl report {data.first} to {data.last}")),
        f"<h1>Aligned models: usage and accuracy</h1><p class=meta>{_e(data.first)} to {_e(data.last)} (UTC "
        f"days) &middot; generated {_e(generated_at.strftime('%Y-%m-%d %H:%M UTC'))} by nugen-etl "
        f"{_e(__version__)} from the warehouse views</p>",
    ]
    if not data.accounts:
        parts.append("<p class=empty>The warehouse holds no accounts yet: run <code>nugen-etl run</code> first.</p>")
        return "".join(parts) + "</body></html>\n"
    parts.append(_overview(data))
    for account in data.accounts.values():
        parts.append(_account_section(account, data, days))
    return "".join(parts) + "</body></html>\n"


def _overview(data: ReportData) -> str:
    rows = []
    for a in data.accounts.values():
        h = a.health
        if h is None:
            rows.append(f"<tr><td>{_link(a.account_id)}</td><td colspan=5 class=empty>no runs recorded</td></tr>")
            continue
        last_success, outcome, failures, last_run, pending = h
        rows.append(
            f"<tr><td>{_link(a.account_id)}</td><td class='outcome {_e(outcome)}'>{_e(outcome)}</td>"
            f"<td>{_ts(last_run)}</td><td>{_ts(last_success)}</td><td class=num>{_e(failures)}</td>"
            f"<td class=num>{_e(pending or 0)}</td></tr>"
        )
    out = [
        "<section id=overview><h2>Overview</h2><h3>Accounts</h3><table><tr><th>account</th>"
        "<th>last outcome</th><th>last run</th><th>last success</th><th>consecutive failures</th>"
        "<th>pending loads</th></tr>",
        *rows,
        "</table>",
    ]
    growth = usage_growth(data)[:TOP_ROWS]
    out.append("<h3>Top models by usage growth</h3>")
    if growth:
        out.append("<table><tr><th>account</th><th>model</th><th>model_key</th><th>usage growth</th></tr>")
        out += [
            f"<tr><td>{_e(a)}</td><td>{_e(data.names.get((a, k), k))}</td><td><code>{_e(k)}</code></td><td class=num>{_num(g, 0)}</td></tr>"
            for a, k, g in growth
        ]
        out.append("</table>")
    else:
        out.append("<p class=empty>No usage was observed on two days in this period.</p>")
    moves = accuracy_moves(data)[:TOP_ROWS]
    out.append("<h3>Largest accuracy moves</h3>")
    if moves:
        out.append("<table><tr><th>account</th><th>model</th><th>model_key</th><th>from</th><th>to</th><th>change</th></tr>")
        out += [
            f"<tr><td>{_e(a)}</td><td>{_e(data.names.get((a, k), k))}</td><td><code>{_e(k)}</code></td>"
            f"<td>{_num(v0, 4)} ({_e(d0)})</td><td>{_num(v1, 4)} ({_e(d1)})</td>"
            f"<td class=num>{v1 - v0:+.4f}</td></tr>"
            for a, k, d0, v0, d1, v1 in moves
        ]
        out.append("</table>")
    else:
        out.append("<p class=empty>No model has an accuracy on two days in this period.</p>")
    return "".join(out) + "</section>"


def _account_section(account: AccountData, data: ReportData, days: list[date]) -> str:
    a = account.account_id
    out = [f"<section class=account id='{_anchor(a)}'><h2>Account {_e(a)}</h2>"]
    if account.health is not None:
        last_success, outcome, failures, last_run, pending = account.health
        out.append(
            f"<p class=health>last outcome <b>{_e(outcome)}</b> at {_ts(last_run)} &middot; last success "
            f"{_ts(last_success)} &middot; consecutive failures {_e(failures)}"
            + (f" &middot; <b>{_e(pending)} warehouse load(s) pending</b>" if pending else "")
            + "</p>"
        )
    if not account.usage and not account.accuracy:
        out.append(f"<p class=empty>No model of this account was observed between {_e(data.first)} and {_e(data.last)}.</p>")
    else:
        ranked = sorted(account.usage, key=lambda k: (-sum(v or 0 for v in account.usage[k].values()), k))
        ranked += sorted(set(account.accuracy) - set(ranked))
        shown = ranked[:CHART_MODELS]
        more = len(ranked) - len(shown)
        note = f" (the {len(shown)} most used; {more} more in the table)" if more > 0 else ""
        labels = {k: data.names.get((a, k), k) for k in shown}
        out.append(f"<h3>Daily usage (usage_delta){_e(note)}</h3>")
        out.append(_chart(days, {labels[k]: account.usage.get(k, {}) for k in shown}, "calls per day"))
        out.append(f"<h3>Accuracy{_e(note)}</h3>")
        out.append(_chart(days, {labels[k]: account.accuracy.get(k, {}) for k in shown}, "accuracy"))
    out.append("<h3>Models now</h3>")
    if account.models:
        out.append(
            "<table><tr><th>name</th><th>model_key</th><th>status</th><th>deployment</th><th>usage</th>"
            "<th>accuracy</th><th>present</th><th>first seen</th><th>last seen</th></tr>"
        )
        for key, name, status, deployment, usage, accuracy, present, first_seen, last_seen in account.models:
            out.append(
                f"<tr><td>{_e(name)}</td><td><code>{_e(key)}</code></td><td>{_e(status)}</td>"
                f"<td>{_e(deployment)}</td><td class=num>{_num(usage, 0)}</td><td class=num>"
                f"{_num(accuracy, 4)}</td><td>{'present' if present else 'retired'}</td>"
                f"<td>{_ts(first_seen)}</td><td>{_ts(last_seen)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p class=empty>No models recorded for this account.</p>")
    out.append("<h3>Recent status changes</h3>")
    if account.changes:
        out.append("<table><tr><th>when</th><th>model</th><th>status</th><th>deployment</th></tr>")
        for key, at, from_s, to_s, from_d, to_d in account.changes[:RECENT_CHANGES]:
            out.append(
                f"<tr><td>{_ts(at)}</td><td>{_e(data.names.get((a, key), key))}</td>"
                f"<td>{_e(from_s)} &rarr; {_e(to_s)}</td><td>{_e(from_d)} &rarr; {_e(to_d)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p class=empty>No status changes in this period.</p>")
    return "".join(out) + "</section>"


def _chart(days: list[date], series: dict[str, dict[date, float | None]], y_title: str) -> str:
    """A line chart of ``series`` (label -> day -> value) over ``days``; a missing day is a gap."""
    try:
        import pygal
        from pygal.style import DefaultStyle
    except ImportError:
        raise NugenEtlError(
            "the HTML report draws its charts with pygal, which is not installed: pip install 'nugen-etl[report]'"
        ) from None

    chart = pygal.Line(
        js=[],
        allow_interruptions=True,
        show_dots=True,
        dots_size=2,
        width=900,
        height=320,
        x_label_rotation=30,
        show_minor_x_labels=False,
        x_labels_major_every=max(1, len(days) // 10),
        truncate_legend=40,
        legend_at_bottom=True,
        legend_at_bottom_columns=2,
        y_title=y_title,
        disable_xml_declaration=True,
        no_data_text="no observations",
        style=DefaultStyle,
        explicit_size=True,
    )
    chart.x_labels = [d.isoformat() for d in days]
    for label, values in series.items():
        chart.add(label, [None if (value := values.get(d)) is None else float(value) for d in days])
    return "<div class=chart>" + _without_scripts(chart.render(is_unicode=True)) + "</div>"


def _without_scripts(svg: str) -> str:
    """The SVG without <script> elements (pygal's tooltip configuration: the page runs no script)."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    root = ET.fromstring(svg)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}script", "script"):
                parent.remove(child)
    root.set("class", (root.get("class", "") + " chart-svg").strip())
    return ET.tostring(root, encoding="unicode")


def _e(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _anchor(account_id: str) -> str:
    return "account-" + "".join(c if c.isalnum() or c in "-_" else f"_{ord(c):x}" for c in account_id)


def _link(account_id: str) -> str:
    return f"<a href='#{_anchor(account_id)}'>{_e(account_id)}</a>"


def _ts(value: datetime | None) -> str:
    return "&ndash;" if value is None else _e(value.strftime("%Y-%m-%d %H:%M"))


def _num(value: float | int | None, digits: int) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:,.{digits}f}"


_HEAD = """<!doctype html><html lang=en><head><meta charset=utf-8>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name=viewport content="width=device-width, initial-scale=1"><title>{title}</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#222;padding:0 1rem}}
h1{{font-size:1.6rem}} h2{{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.5rem}}
table{{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}} td,th{{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}}
th{{background:#f4f4f4}} td.num{{text-align:right}} .meta{{color:#666}} .empty{{color:#666;font-style:italic}}
.outcome.ok,.outcome.empty{{color:#1a7f37}} .outcome.failed,.outcome.auth_failed{{color:#b42318;font-weight:bold}}
.chart svg{{width:100%;height:auto}} code{{font-size:.85em}}
</style></head><body>
"""
