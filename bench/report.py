"""The Markdown table of a result."""

from __future__ import annotations

from typing import Any


def _value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _load(result: dict[str, Any]) -> str:
    start, end = result["machine"].get("load_avg"), result.get("load_avg_at_end")
    if not start:
        return ""
    return f"; load average (1/5/15 min) {' / '.join(map(str, start))} at the start" + (
        f", {' / '.join(map(str, end))} at the end" if end else ""
    )


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Benchmark `{result.get('command') or 'python -m bench'}` ({result['sizes']} sizes), "
        f"{result['started_at']}, {result['duration_s'] / 60:.1f} min",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
        f"pyarrow {m['pyarrow']}, DuckDB {m['duckdb']}" + (f", deltalake {m['deltalake']}" if m.get("deltalake") else "") + _load(result),
        "",
        "| scenario | metric | value | unit | target | met | note |",
        "|---|---|---:|---|---|---|---|",
    ]
    for res in result["scenarios"].values():
        for r in res.get("rows", []):
            met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
            note = " ".join(str(r["note"]).split()).replace("|", "/")
            lines.append(f"| {r['scenario']} | {r['metric']} | {_value(r['value'])} | {r['unit']} | {r['target']} | {met} | {note} |")
    if result.get("notes"):
        lines += ["", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"
