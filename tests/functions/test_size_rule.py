"""The size rule (spec §3.2): an answer must fit what carries it — a Lambda response carries 6 MB —
and, with ``MaxAttestationBytes``, the envelope must fit that too. Checked before anything is
reserved or signed: a refused request is not charged, not signed, and audited with its code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellaops_signer import wiring
from stellaops_signer.domain.sizing import LAMBDA_RESPONSE_BYTES
from tests.conftest import load_event, poe_for
from tests.functions.conftest import sign_event, verify_dsse

EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(EVENT["body"])
HEADERS = {k: v for k, v in EVENT["headers"].items() if k != "Idempotency-Key"}


def _body(predicate_bytes: int, bundle: str, licensing: Any) -> dict[str, Any]:
    return {
        **BODY,
        "predicate": {"blob": "x" * predicate_bytes},
        "poe": {"format": "jwt", "value": poe_for(licensing)},
        "options": {"signingMode": "kms", "returnBundle": bundle},
    }


@pytest.fixture
def kms_calls(aws: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    signer = wiring.container().key_signer
    calls: list[int] = []
    real = signer.sign
    monkeypatch.setattr(signer, "sign", lambda message: calls.append(len(message)) or real(message))
    return calls


def _usage() -> dict[str, int]:
    container = wiring.container()
    return container.quotas.usage("LIC-A-001", container.settings.plans["pro"])


@pytest.mark.parametrize(
    ("predicate_bytes", "bundle"),
    [(2_600_000, "sigstore"), (5_100_000, "dsse")],
    ids=["2.6MB-sigstore", "5.1MB-dsse"],
)
def test_an_answer_over_the_lambda_response_limit_is_refused_before_anything_is_charged(
    aws: Any, handlers: Any, licensing: Any, kms_calls: list[int], predicate_bytes: int, bundle: str
) -> None:
    """GIVEN a request well under the plan's 10 MB WHEN its answer would exceed 6 MB THEN 413."""
    answer = handlers["sign_dsse"](sign_event(_body(predicate_bytes, bundle, licensing), headers=HEADERS))
    problem = json.loads(answer["body"])
    assert (answer["statusCode"], problem["code"]) == (413, "artifact_too_large")
    assert str(LAMBDA_RESPONSE_BYTES) in problem["detail"] and "Lambda" in problem["detail"]
    assert kms_calls == [] and _usage() == {"qps": 0, "daily": 0, "inFlight": 0}
    assert [(r["decision"], r["error_code"]) for r in aws.audit_records()] == [("deny", "artifact_too_large")]


def test_an_answer_just_inside_the_limit_is_signed_and_fits(
    aws: Any, handlers: Any, licensing: Any, kms_calls: list[int]
) -> None:
    answer = handlers["sign_dsse"](sign_event(_body(4_300_000, "dsse", licensing), headers=HEADERS))
    assert answer["statusCode"] == 200, answer["body"][:300]
    assert len(json.dumps(answer)) <= LAMBDA_RESPONSE_BYTES  # what Lambda would carry back
    verify_dsse(json.loads(answer["body"])["bundle"])


def test_max_attestation_bytes_caps_the_envelope(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN MaxAttestationBytes 100000 (public Rekor) THEN an 80 KB predicate is refused, 10 KB is not."""
    monkeypatch.setenv("SIGNER_MAX_ATTESTATION_BYTES", "100000")
    wiring.reset()
    refused = handlers["sign_dsse"](sign_event(_body(80_000, "dsse", licensing), headers=HEADERS))
    problem = json.loads(refused["body"])
    assert (refused["statusCode"], problem["code"]) == (413, "artifact_too_large")
    assert "MaxAttestationBytes allows 100000" in problem["detail"]
    assert _usage()["daily"] == 0
    allowed = handlers["sign_dsse"](sign_event(_body(10_000, "dsse", licensing), headers=HEADERS))
    assert allowed["statusCode"] == 200
    envelope = json.loads(allowed["body"])["bundle"]["dsse"]
    assert len(json.dumps(envelope, separators=(",", ":"))) <= 100_000


def test_the_pipeline_carries_large_answers_by_reference_instead(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any
) -> None:
    """A direct invocation's answer over 200 KiB goes to S3: the Lambda response limit is not its carrier."""
    from tests.functions.conftest import token_for

    request = _body(300_000, "sigstore", licensing)
    answer = handlers["sign_dsse"]({"opToken": token_for(authority, client_cert), "request": request})
    assert set(answer) == {"result"} and answer["result"]["size"] > 600_000
