"""Shared pieces of the end-to-end tests: a simulator-backed config and expected numbers computed
independently from the simulator's state (never from the pipeline's output)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from nugen_etl.config import Config, parse_config
from nugen_etl.simulator import SimulatorState

T0 = datetime(2026, 3, 1, 20, tzinfo=UTC)  # simulator start; the slots below cross midnight
SLOTS = [T0 + timedelta(hours=h) for h in range(8)]
FETCH_OFFSET = timedelta(minutes=3)  # the simulated clock during a slot's run
REJECTED = "acct-bad"


def key_env(account_id: str) -> str:
    return "NUGEN_TEST_KEY_" + account_id.upper().replace("-", "_").replace(".", "_")


def environ_for(state: SimulatorState) -> dict[str, str]:
    env = {key_env(a): state.api_key(a) for a in state.account_ids}
    env[key_env(REJECTED)] = "sk-sim-this-key-is-rejected"
    return env


def make_config(root: Path, base_url: str, state: SimulatorState, *, warehouse_url: str | None = None, **api: Any) -> Config:
    accounts = [{"id": a, "api_key_env": key_env(a)} for a in [*state.account_ids, REJECTED]]
    data = {
        "api": {
            "base_url": base_url,
            "timeout_s": 5,
            "max_concurrency": 4,
            "max_attempts": 2,
            "retry_base_delay_s": 0.01,
            "deadline_s": 20,
            **api,
        },
        "storage": {"root": str(root), "fsync": False},
        "warehouse": {"url": warehouse_url or f"duckdb:///{root / 'warehouse.duckdb'}", "batch_accounts": 2},
        "accounts": accounts,
    }
    return parse_config(data, base_dir=root, environ=environ_for(state))


def canonical_accuracy(model: dict[str, Any]) -> float | None:
    pm = model.get("performance_metrics") or {}
    ev = model.get("evaluation_data") or {}
    nested = ev.get("metrics") or {}
    for value in (pm.get("accuracy"), pm.get("accuracy_after"), nested.get("accuracy"), ev.get("accuracy")):
        if value is not None:
            return float(value)
    return None


def observations(state: SimulatorState, account_id: str, slots: list[datetime]) -> dict[str, list[tuple]]:
    """model_key -> [(slot, usage summed over the key, accuracy, status, deployment_status)] in slot order."""
    series: dict[str, list[tuple]] = defaultdict(list)
    for slot in slots:
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for model in state.models_at(account_id, slot + FETCH_OFFSET):
            by_key[model["alignment_id"] or model["id"]].append(model)
        for key, models in by_key.items():
            chosen = max(models, key=lambda m: m["id"])
            series[key].append(
                (slot, sum(m["usage_count"] for m in models), canonical_accuracy(chosen), chosen["status"], chosen["deployment_status"])
            )
    return series


def expected_usage_daily(series: dict[str, list[tuple]]) -> dict[tuple[str, date], tuple[int, int | None]]:
    """(model_key, day) -> (usage_count at the day's last snapshot, usage_delta) by the documented rule."""
    out: dict[tuple[str, date], tuple[int, int | None]] = {}
    for key, obs in series.items():
        prev = None
        for slot, usage, *_ in obs:
            delta = None if prev is None else (usage - prev if usage >= prev else usage)
            day = slot.date()
            _, acc = out.get((key, day), (None, None))
            total = acc if delta is None else (acc or 0) + delta
            out[(key, day)] = (usage, total)
            prev = usage
    return out


def expected_status_changes(series: dict[str, list[tuple]]) -> set[tuple]:
    changes = set()
    for key, obs in series.items():
        for (_, _, _, s0, d0), (slot, _, _, s1, d1) in zip(obs, obs[1:], strict=False):
            if (s0, d0) != (s1, d1):
                changes.add((key, slot, s0, s1, d0, d1))
    return changes


def write_toml_config(
    folder: Path,
    base_url: str,
    accounts: list[str],
    *,
    api: dict[str, Any] | None = None,
    storage: dict[str, Any] | None = None,
    warehouse: dict[str, Any] | None = None,
) -> Path:
    """Write ``folder/nugen.toml`` as a user would (the CLI reads it); keys come from ``key_env``."""

    def table(name: str, values: dict[str, Any]) -> list[str]:
        return [f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items()), ""]

    lines = table("api", {"base_url": base_url, "timeout_s": 5, **(api or {})})
    lines += table("storage", {"root": "data", "fsync": False, **(storage or {})})
    if warehouse:
        lines += table("warehouse", warehouse)
    for account in accounts:
        lines += ["[[accounts]]", f'id = "{account}"', f'api_key_env = "{key_env(account)}"', ""]
    path = folder / "nugen.toml"
    path.write_text("\n".join(lines))
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
