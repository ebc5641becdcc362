"""``nugen-etl report --html``: the demo's report in a real headless Chromium, the report's numbers against
the views' on both engines, and the plain answers to an empty warehouse, an account without data and a
period without slots."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nugen_etl.airflow.tasks import REPORT_KEY, write_latest_report
from nugen_etl.cli import main
from nugen_etl.demo import MARKUP_NAME, REPORT_NAME, run_demo
from nugen_etl.errors import ConfigError
from nugen_etl.html_report import build_report
from nugen_etl.records import Outcome, SlotLoad
from nugen_etl.storage import LocalStorage
from nugen_etl.warehouse import open_warehouse

from .browser import Browser, find_chromium
from .test_warehouse import ok_slot

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("NUGEN_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
NOW = datetime(2024, 3, 10, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    assert run_demo(folder, out=out) == 0
    assert f"HTML report     : {folder.resolve() / REPORT_NAME}" in out.getvalue()
    return folder.resolve()


def test_the_demo_report_in_a_real_headless_chromium(demo: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("NUGEN_REQUIRE_BROWSER"):
            pytest.fail("NUGEN_REQUIRE_BROWSER is set but no chromium is installed (.ci/run installs it)")
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    page = demo / REPORT_NAME
    with Browser(chromium) as browser:
        load = browser.open(page.as_uri())
        assert load.failed_requests == [] and load.console_errors == [] and load.dialogs == [], load
        assert load.requests == [page.as_uri()], "the page requests nothing but itself"
        charts = browser.evaluate(
            "Array.from(document.querySelectorAll('.chart svg')).map(s => "
            "[s.querySelectorAll('path.line').length, s.querySelectorAll('circle.dot').length])"
        )
        # three demo accounts have models: a usage and an accuracy chart each, every one drawn
        assert len(charts) == 6 and all(lines > 0 and dots > 0 for lines, dots in charts), charts
        assert browser.evaluate(f"document.body.innerText.includes({MARKUP_NAME!r})")
        assert browser.evaluate("document.querySelectorAll('script').length") == 0
        shot = browser.screenshot(ARTIFACTS / "report-demo.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Tables(HTMLParser):
    """The text of every table cell, per table, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, tzinfo=UTC)


def failed_slot(account: str, snapshot_at: datetime, status: int) -> SlotLoad:
    run = dataclasses.replace(ok_slot(account, snapshot_at).run, outcome=Outcome.FAILED, http_status=status, error=f"HTTP {status}")
    return SlotLoad(run)


def load_history(warehouse) -> None:
    """acme: two models over five days, day 3 failed (a gap); beta: one model; gamma: only failures."""
    warehouse.migrate()
    usage = {1: (10, 5), 2: (15, 5), 4: (30, 8), 5: (31, 20)}
    accuracy = {1: (0.5, 0.9), 2: (0.6, 0.9), 4: (0.8, 0.85), 5: (0.82, 0.8)}
    for day in range(1, 6):
        if day in usage:
            models = [
                {
                    "model_id": "m1",
                    "name": "alpha <b>bold</b> & co",
                    "usage_count": usage[day][0],
                    "accuracy": accuracy[day][0],
                    "status": "DEPLOYED" if day < 4 else "READY",
                },
                {"model_id": "m2", "name": "beta_model", "usage_count": usage[day][1], "accuracy": accuracy[day][1], "status": "DEPLOYED"},
            ]
            warehouse.load([ok_slot("acme", at(day), models)])
        else:
            warehouse.load([failed_slot("acme", at(day), 503)])
        warehouse.load([ok_slot("beta", at(day), [{"model_id": "b1", "name": "b", "usage_count": 3 * day, "accuracy": 0.7}])])
        warehouse.load([failed_slot("gamma", at(day), 500)])


def test_the_report_numbers_are_the_views_numbers(warehouse) -> None:
    load_history(warehouse)
    first, last = date(2024, 3, 1), date(2024, 3, 5)
    page = build_report(warehouse, now=NOW, first=first, last=last)
    tables = tables_of(page)
    accounts, growth, moves = tables[0], tables[1], tables[2]

    health = warehouse.fetch_all("SELECT account_id, last_outcome, consecutive_failures FROM nugen.account_health ORDER BY account_id")
    assert [(r[0], r[1], int(r[4])) for r in accounts[1:]] == [(a, o, f) for a, o, f in health]

    expected_growth = warehouse.fetch_all(
        "SELECT account_id, model_key, sum(usage_delta) FROM nugen.model_usage_daily WHERE day BETWEEN ? AND ? "
        "GROUP BY account_id, model_key HAVING count(usage_delta) > 0 ORDER BY 3 DESC, 1, 2",
        [first, last],
    )
    assert [(r[0], r[2], r[3]) for r in growth[1:]] == [(a, k, f"{g:,.0f}") for a, k, g in expected_growth]

    daily = warehouse.fetch_all(
        "SELECT account_id, model_key, day, accuracy FROM nugen.model_accuracy_daily "
        "WHERE day BETWEEN ? AND ? AND accuracy IS NOT NULL ORDER BY day",
        [first, last],
    )
    ends: dict[tuple[str, str], list] = {}
    for a, k, d, v in daily:
        ends.setdefault((a, k), []).append((d, v))
    expected_moves = sorted(
        ((a, k, s[0][1], s[-1][1]) for (a, k), s in ends.items() if len(s) > 1), key=lambda r: (-abs(r[3] - r[2]), r[0], r[1])
    )
    assert [(r[0], r[2], r[5]) for r in moves[1:]] == [(a, k, f"{v1 - v0:+.4f}") for a, k, v0, v1 in expected_moves]

    latest = warehouse.fetch_all(
        "SELECT name, model_key, status, usage_count, accuracy, is_present "
        "FROM nugen.models_latest WHERE account_id = 'acme' ORDER BY model_key"
    )
    acme_models = next(t for t in tables if t[0][0] == "name" and any(r[1] == "m1" for r in t[1:]))
    assert sorted((r[0], r[1], r[2], r[4], r[5], r[6]) for r in acme_models[1:]) == [
        (n, k, s, f"{u:,.0f}", f"{a:,.4f}", "present" if p else "retired") for n, k, s, u, a, p in latest
    ]

    # the chart draws one point per view row; day 3, which has none, is a gap, not a zero
    acme = page[page.index("<section class=account id='account-acme'>") :]
    usage_chart = acme[: acme.index("<h3>Accuracy")]
    points = [float(v) for v in re.findall(r'<desc class="value">([^<]*)</desc>', usage_chart)]
    rows = warehouse.fetch_all(
        "SELECT usage_delta FROM nugen.model_usage_daily WHERE account_id = 'acme' AND day BETWEEN ? AND ? AND usage_delta IS NOT NULL",
        [first, last],
    )
    assert sorted(points) == sorted(float(v) for (v,) in rows)
    assert "alpha &lt;b&gt;bold&lt;/b&gt; &amp; co" in page and "<b>bold</b>" not in page


def test_a_status_change_and_health_show_per_account(warehouse) -> None:
    load_history(warehouse)
    page = build_report(warehouse, now=NOW, first=date(2024, 3, 1), last=date(2024, 3, 5))
    acme = page[page.index("id='account-acme'") : page.index("id='account-beta'")]
    assert "DEPLOYED &rarr; READY" in acme
    assert "consecutive failures 0" in acme
    gamma = page[page.index("id='account-gamma'") :]
    assert "last outcome <b>failed</b>" in gamma and "consecutive failures 5" in gamma
    assert "No model of this account was observed between 2024-03-01 and 2024-03-05" in gamma


def test_plain_answers_for_an_empty_warehouse_an_unknown_account_and_an_empty_period(tmp_path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    with open_warehouse(url) as wh:
        assert "The warehouse holds no accounts yet" in build_report(wh, now=NOW)  # not even migrated
        wh.migrate()
        assert "The warehouse holds no accounts yet" in build_report(wh, now=NOW)
        load_history(wh)
        nobody = build_report(wh, now=NOW, accounts=["acct-none"])
        assert "no runs recorded" in nobody and "No model of this account was observed" in nobody
        past = build_report(wh, now=NOW, first=date(2023, 1, 1), last=date(2023, 1, 31))
        assert "No usage was observed on two days in this period" in past
        assert "No model has an accuracy on two days in this period" in past
        assert past.count("No model of this account was observed between 2023-01-01 and 2023-01-31") == 3
        with pytest.raises(ConfigError, match="is before --from"):
            build_report(wh, now=NOW, first=date(2024, 3, 5), last=date(2024, 3, 1))


def test_the_cli_writes_the_report_and_refuses_a_reversed_period(demo: Path, tmp_path, capsys) -> None:
    target = tmp_path / "out" / "r.html"
    config = demo / "nugen-demo.toml"
    assert main(["report", "--config", str(config), "--html", str(target), "--account", "acct-0002"]) == 0
    page = target.read_text(encoding="utf-8")
    assert "Account acct-0002" in page and "Account acct-0001" not in page
    assert f"report written to {target}" in capsys.readouterr().out
    assert main(["report", "--config", str(config), "--html", str(target), "--from", "2024-03-05", "--to", "2024-03-01"]) == 2
    assert "before --from" in capsys.readouterr().err


def test_publish_writes_the_report_and_never_fails_on_it(tmp_path, caplog) -> None:
    storage = LocalStorage(tmp_path)
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        load_history(wh)
        assert write_latest_report(wh, storage) == REPORT_KEY
    assert "Account acme" in (tmp_path / REPORT_KEY).read_text(encoding="utf-8")

    class Broken:
        def fetch_all(self, *args):
            raise RuntimeError("the warehouse went away")

    assert write_latest_report(Broken(), storage) is None  # type: ignore[arg-type]
    assert "the HTML report was not written (RuntimeError: the warehouse went away)" in caplog.text
    assert "Account acme" in (tmp_path / REPORT_KEY).read_text(encoding="utf-8"), "the last good one stays"
