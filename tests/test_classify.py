"""Outcome classification of one answer (shared by live runs and archive replay)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nugen_etl.classify import classify_answer
from nugen_etl.records import Outcome, RawAnswer

T = datetime(2026, 1, 1, tzinfo=UTC)


def answer(status: int | None, body: bytes = b"", error: str | None = None) -> RawAnswer:
    return RawAnswer(account_id="a", snapshot_at=T, fetched_at=T, http_status=status, body=body, error=error)


@pytest.mark.parametrize(
    "status, body, outcome, error_part",
    [
        (200, b'{"domain_aligned_models": [{"id": "x"}]}', Outcome.OK, None),
        (200, b'{"domain_aligned_models": []}', Outcome.EMPTY, None),
        (404, b'{"detail": "No aligned models found"}', Outcome.EMPTY, None),
        (404, b'{"detail": "Not Found"}', Outcome.FAILED, "wrong base_url"),
        (404, b"<html>nginx</html>", Outcome.FAILED, "not the 'no models' answer"),
        (401, b'{"detail": "Invalid API key"}', Outcome.AUTH_FAILED, "rejected: Invalid API key"),
        (403, b"", Outcome.AUTH_FAILED, "HTTP 403"),
        (400, b'{"detail": "Bad request"}', Outcome.FAILED, "HTTP 400: Bad request"),
        (422, b'{"detail": [{"loc": ["header", "Authorization"], "msg": "field required"}]}', Outcome.FAILED, "field required"),
        (503, b"", Outcome.FAILED, "HTTP 503"),
        (200, b'{"domain_aligned_models": [', Outcome.FAILED, "malformed JSON"),
        (200, b"\xff\xfe", Outcome.FAILED, "malformed JSON"),
        (200, b"[1, 2]", Outcome.FAILED, "JSON list, expected an object"),
        (200, b"{}", Outcome.FAILED, "domain_aligned_models is missing"),
        (200, b'{"domain_aligned_models": {"id": 1}}', Outcome.FAILED, "a dict, not a list"),
        (None, b"", Outcome.FAILED, "timed out"),
    ],
)
def test_outcomes(status: int | None, body: bytes, outcome: Outcome, error_part: str | None) -> None:
    result = classify_answer(answer(status, body, error="timed out after 5 attempts" if status is None else None))
    assert result.outcome is outcome
    if error_part is None:
        assert result.error is None and isinstance(result.models, list)
    else:
        assert error_part in (result.error or "") and result.models is None


def test_ok_keeps_the_model_list_as_parsed() -> None:
    result = classify_answer(answer(200, b'{"domain_aligned_models": [{"id": "m1"}, "junk"]}'))
    assert result.models == [{"id": "m1"}, "junk"]
