"""The simulator's deterministic state model: which models an account has and what they look like at time t.

Everything is a pure function of ``(seed, account_id, model index i, models, start, t)``; the
API lists an account's models in index order i = 0 .. models - 1, and the payload only changes at
whole hours after ``start``.

Notation
    digest     = shake_256(f"{seed}|{account_id}|{i}".encode()).digest(8 * len(LABELS))
    B(label)   = digest[8*j : 8*j + 8] with j = LABELS.index(label)
    H(label)   = int.from_bytes(B(label), "big");  U(label) = H(label) / 2**64  (a float in [0, 1))
    X(label)   = B(label).hex()                          (16 hex characters)
    k          = floor((t - start) / 1 hour)            (the simulated hour slot; may be negative)
    slot_start = start + k hours

Identity
    alignment_id = None if (models >= 4 and i == models - 1) else f"alignment-{X('alignment')[:10]}"
    id           = f"aligned-model-{X('id')[:15]}" when alignment_id is None (never changes), else
                   alignment_id while undeployed and alignment_id + "-deployed" once deployed.
    created_date = start - (24*(i+1) + H('created_h') % 24) hours - (H('created_m') % 60) minutes;
                   a model is listed only when created_date <= t (so from start - 24 h on, all are).

Deployment (status / deployment_status; endpoint is "" unless DEPLOYED)
    i == 0 or (i even, i >= 2): DEPLOYED / DEPLOYED always.
    i == 1: deploy_at = start + D hours, D = 1 + H('deploy') % 6;
            READY / READY before deploy_at - 1 h, DEPLOYING / DEPLOYING in [deploy_at - 1 h, deploy_at),
            DEPLOYED / DEPLOYED from deploy_at (the id changes exactly then).
    i odd, i >= 3: UNDEPLOYED / UNDEPLOYED when i % 4 == 3, else EVALUATED / READY.
    endpoint when deployed = f"https://api.nugen.in/api/v3/inference/completions/{id}".

usage_count (base = 100 + H('base') % 900, rate = 1 + H('rate') % 20)
    i == 1:          0 before deploy_at, then rate * (1 + k - D).
    i odd, i >= 3:   0 always.
    i == 2:          reset_at = start + R hours, R = 2 + H('reset') % 6; before reset_at
                     base + rate * max(k, 0); from reset_at on (1 + H('reset_to') % 5) + rate * (k - R).
    otherwise:       base + rate * max(k, 0).
    last_used = None when usage_count == 0, else
                max(slot_start - (1 + H('last') % 59) minutes, created_date, deploy_at for i == 1).

performance_metrics (a0 = round(0.70 + 0.25 * U('acc'), 4), drift = (U('drift') - 0.5) / 1000 per hour)
    accuracy    = round(min(0.99, max(0.5, a0 + drift * max(k, 0))), 4)
    uncertainty = round(0.8 * (1 - accuracy), 4);  domain_violations = round(30 * (1 - accuracy))
    even i, schema shape: {accuracy, uncertainty, domain_violations, average_response_time}, with
        average_response_time = round(0.4 + 1.6 * U('art'), 3) when deployed, else 0.
    odd i, prose shape: {accuracy_before, accuracy_after, uncertainty_before, uncertainty_after,
        domain_violations_before, domain_violations_after}; *_after are the values above,
        accuracy_before = round(a0 - round(0.05 + 0.15 * U('gain'), 4), 4) and the other *_before
        use the same uncertainty / domain_violations formulas on accuracy_before.

evaluation_data (q = 20 + H('questions') % 81)
    i % 3 == 0: nested {evaluation_id: f"eval-{X('eval')[:8]}", status: "READY" if (i // 3) % 2 == 0
                else "COMPLETED", method: "eval", metrics: {accuracy: a0, [domain_violations,]
                overall_score: a0[, uncertainty]}, raw_answers_count: q, created_at: created + 2 h,
                completed_at: created + 2 h 15 min}; domain_violations/uncertainty (same formulas on a0)
                only for even i.
    i % 3 == 1: flat {accuracy: a0, total_questions: q}.
    i % 3 == 2: null.

Other fields: base_model "nugen-flash-instruct"; name f"{domain}_model_{i}" and alignment_project
f"{Domain Title} Alignment" with domain = DOMAINS[H('name') % 8]; creator
f"ml-{1 + H('creator') % 3}@{account_id}.example.com"; downloadable = H('download') % 2 == 0;
conversation_saving_enabled = H('conversations') % 2 == 0. Times are ISO 8601 with "Z".
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)
DOMAINS = (
    "customer_support",
    "legal_document",
    "medical_triage",
    "finance_qa",
    "hr_policy",
    "retail_catalog",
    "insurance_claims",
    "devops_runbook",
)
LABELS = (
    "alignment",
    "id",
    "name",
    "creator",
    "created_h",
    "created_m",
    "deploy",
    "reset",
    "base",
    "rate",
    "reset_to",
    "last",
    "acc",
    "drift",
    "gain",
    "art",
    "questions",
    "eval",
    "download",
    "conversations",
)
_LABEL_INDEX = {label: j for j, label in enumerate(LABELS)}


def iso(t: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a trailing "Z" (seconds precision)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_of(start: datetime, t: datetime) -> int:
    """The whole number of hours from ``start`` to ``t``, floored (negative before start)."""
    return (t - start) // HOUR


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The time-independent facts about one model; ``model_at`` turns them into a payload object."""

    account_id: str
    index: int
    alignment_id: str | None
    fixed_id: str | None
    name: str
    project: str
    creator: str
    created_at: datetime
    created_date: str
    deploy_at: datetime | None
    reset_at: datetime | None
    base: int
    rate: int
    reset_to: int
    last_used_minutes: int
    a0: float
    drift: float
    gain: float
    response_time: float
    questions: int
    evaluation_id: str
    downloadable: bool
    conversations: bool


def build_specs(seed: int, account_id: str, models: int, start: datetime) -> tuple[ModelSpec, ...]:
    """The ``models`` specs of one account, in the order the API lists them."""
    return tuple(_spec(seed, account_id, i, models, start) for i in range(models))


def _spec(seed: int, account_id: str, i: int, models: int, start: datetime) -> ModelSpec:
    digest = hashlib.shake_256(f"{seed}|{account_id}|{i}".encode()).digest(8 * len(LABELS))

    def x(label: str) -> str:
        j = _LABEL_INDEX[label]
        return digest[8 * j : 8 * j + 8].hex()

    def h(label: str) -> int:
        return int(x(label), 16)

    def u(label: str) -> float:
        return h(label) / 2**64

    domain = DOMAINS[h("name") % len(DOMAINS)]
    no_alignment = models >= 4 and i == models - 1
    created = start - timedelta(hours=24 * (i + 1) + h("created_h") % 24, minutes=h("created_m") % 60)
    return ModelSpec(
        account_id=account_id,
        index=i,
        alignment_id=None if no_alignment else f"alignment-{x('alignment')[:10]}",
        fixed_id=f"aligned-model-{x('id')[:15]}" if no_alignment else None,
        name=sys.intern(f"{domain}_model_{i}"),
        project=sys.intern(f"{domain.replace('_', ' ').title()} Alignment"),
        creator=sys.intern(f"ml-{1 + h('creator') % 3}@{account_id}.example.com"),
        created_at=created,
        created_date=iso(created),
        deploy_at=start + (1 + h("deploy") % 6) * HOUR if i == 1 else None,
        reset_at=start + (2 + h("reset") % 6) * HOUR if i == 2 else None,
        base=100 + h("base") % 900,
        rate=1 + h("rate") % 20,
        reset_to=1 + h("reset_to") % 5,
        last_used_minutes=1 + h("last") % 59,
        a0=round(0.70 + 0.25 * u("acc"), 4),
        drift=(u("drift") - 0.5) / 1000,
        gain=round(0.05 + 0.15 * u("gain"), 4),
        response_time=round(0.4 + 1.6 * u("art"), 3),
        questions=20 + h("questions") % 81,
        evaluation_id=f"eval-{x('eval')[:8]}",
        downloadable=h("download") % 2 == 0,
        conversations=h("conversations") % 2 == 0,
    )


def status_at(spec: ModelSpec, t: datetime) -> tuple[str, str]:
    """``(status, deployment_status)`` of the model at ``t``."""
    i = spec.index
    if spec.deploy_at is not None:
        if t >= spec.deploy_at:
            return "DEPLOYED", "DEPLOYED"
        return ("DEPLOYING", "DEPLOYING") if t >= spec.deploy_at - HOUR else ("READY", "READY")
    if i % 2 == 0:
        return "DEPLOYED", "DEPLOYED"
    return ("UNDEPLOYED", "UNDEPLOYED") if i % 4 == 3 else ("EVALUATED", "READY")


def usage_at(spec: ModelSpec, start: datetime, t: datetime) -> int:
    """The cumulative ``usage_count`` at ``t`` (0 before the model exists)."""
    if t < spec.created_at:
        return 0
    k = slot_of(start, t)
    if spec.deploy_at is not None:
        return 0 if t < spec.deploy_at else spec.rate * (1 + slot_of(spec.deploy_at, t))
    if spec.index % 2 == 1:
        return 0
    if spec.reset_at is not None and t >= spec.reset_at:
        return spec.reset_to + spec.rate * slot_of(spec.reset_at, t)
    return spec.base + spec.rate * max(k, 0)


def _last_used(spec: ModelSpec, start: datetime, t: datetime, usage: int) -> str | None:
    if usage == 0:
        return None
    last = start + slot_of(start, t) * HOUR - timedelta(minutes=spec.last_used_minutes)
    floor = max(spec.created_at, spec.deploy_at or spec.created_at)
    return iso(max(last, floor))


def _quality(accuracy: float) -> tuple[float, int]:
    return round(0.8 * (1 - accuracy), 4), round(30 * (1 - accuracy))


def _performance(spec: ModelSpec, k: int, deployed: bool) -> dict[str, Any]:
    accuracy = round(min(0.99, max(0.5, spec.a0 + spec.drift * max(k, 0))), 4)
    uncertainty, violations = _quality(accuracy)
    if spec.index % 2 == 0:
        return {
            "accuracy": accuracy,
            "average_response_time": spec.response_time if deployed else 0,
            "domain_violations": violations,
            "uncertainty": uncertainty,
        }
    before = round(spec.a0 - spec.gain, 4)
    uncertainty_before, violations_before = _quality(before)
    return {
        "accuracy_before": before,
        "accuracy_after": accuracy,
        "uncertainty_before": uncertainty_before,
        "uncertainty_after": uncertainty,
        "domain_violations_before": violations_before,
        "domain_violations_after": violations,
    }


def _evaluation(spec: ModelSpec) -> dict[str, Any] | None:
    i = spec.index
    if i % 3 == 2:
        return None
    if i % 3 == 1:
        return {"accuracy": spec.a0, "total_questions": spec.questions}
    uncertainty, violations = _quality(spec.a0)
    metrics: dict[str, Any] = {"accuracy": spec.a0}
    if i % 2 == 0:
        metrics["domain_violations"] = violations
    metrics["overall_score"] = spec.a0
    if i % 2 == 0:
        metrics["uncertainty"] = uncertainty
    began = spec.created_at + 2 * HOUR
    return {
        "completed_at": iso(began + timedelta(minutes=15)),
        "created_at": iso(began),
        "evaluation_id": spec.evaluation_id,
        "method": "eval",
        "metrics": metrics,
        "raw_answers_count": spec.questions,
        "status": "READY" if (i // 3) % 2 == 0 else "COMPLETED",
    }


def model_at(spec: ModelSpec, start: datetime, t: datetime) -> dict[str, Any]:
    """The JSON object the API serves for this model at ``t`` (a fresh dict each call)."""
    status, deployment_status = status_at(spec, t)
    deployed = deployment_status == "DEPLOYED"
    if spec.fixed_id is not None:
        model_id = spec.fixed_id
    else:
        model_id = f"{spec.alignment_id}-deployed" if deployed else str(spec.alignment_id)
    usage = usage_at(spec, start, t)
    return {
        "id": model_id,
        "alignment_id": spec.alignment_id,
        "name": spec.name,
        "base_model": "nugen-flash-instruct",
        "alignment_project": spec.project,
        "created_date": spec.created_date,
        "status": status,
        "deployment_status": deployment_status,
        "endpoint": f"https://api.nugen.in/api/v3/inference/completions/{model_id}" if deployed else "",
        "creator": spec.creator,
        "usage_count": usage,
        "last_used": _last_used(spec, start, t, usage),
        "performance_metrics": _performance(spec, slot_of(start, t), deployed),
        "downloadable": spec.downloadable,
        "evaluation_data": _evaluation(spec),
        "conversation_saving_enabled": spec.conversations,
    }
