"""What a caller reads in an answer (spec §3.5, §3.6): the tenant rule on /keys, RateLimit fields that
describe the policy closest to running out, and refusals that say what is wrong and where."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from stellaops_signer import wiring
from tests.conftest import load_event, poe_for
from tests.functions.conftest import response_headers, sign_event

EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(EVENT["body"])
HEADERS = {k: v for k, v in EVENT["headers"].items() if k != "Idempotency-Key"}


def _sign(handlers: Any, body: Any = None, raw: str | None = None) -> tuple[int, dict[str, str], Any]:
    answer = handlers["sign_dsse"](
        sign_event(body if body is not None else BODY, headers=HEADERS, raw_body=raw)
    )
    return answer["statusCode"], response_headers(answer), json.loads(answer["body"])


def test_keys_refuses_a_tenant_header_naming_another_tenant(aws: Any, handlers: Any) -> None:
    event = load_event("sign_dsse/keys.json")
    event["headers"]["X-StellaOps-Tenant"] = "tenant-b"
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    answer = handlers["sign_dsse"](event)
    assert (answer["statusCode"], json.loads(answer["body"])["code"]) == (403, "tenant_mismatch")


def test_rate_limit_fields_describe_the_policy_closest_to_running_out(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a plan of 10 a second and 2 a day WHEN the day's last signing succeeds THEN the fields
    describe the day (0 left, reset at midnight), and the policy names both."""
    plans = json.loads(os.environ["SIGNER_PLANS"])
    monkeypatch.setenv(
        "SIGNER_PLANS",
        json.dumps(
            {**plans, "two": {"qps": 10, "concurrency": 5, "maxArtifactBytes": 1048576, "dailySignatures": 2}}
        ),
    )
    wiring.reset()
    body = {**BODY, "poe": {"format": "jwt", "value": poe_for(licensing, plan="two")}}
    first = _sign(handlers, body)[1]
    assert (first["ratelimit-limit"], first["ratelimit-remaining"]) == ("2", "1")  # 1 of 2 left today
    status, headers, _ = _sign(handlers, body)
    assert status == 200
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("2", "0")
    assert 1 <= int(headers["ratelimit-reset"]) <= 86400
    assert headers["ratelimit-policy"] == '10;w=1;comment="per second", 2;w=86400;comment="per day"'
    status, refused, problem = _sign(handlers, body)
    assert (status, problem["code"]) == (429, "quota_exhausted")
    assert (
        refused["ratelimit-policy"] == headers["ratelimit-policy"] and refused["ratelimit-remaining"] == "0"
    )


def test_an_unsupported_predicate_type_names_the_ones_that_are_allowed(aws: Any, handlers: Any) -> None:
    status, _, problem = _sign(handlers, {**BODY, "predicateType": "https://example.com/unknown@v1"})
    assert (status, problem["code"]) == (400, "unsupported_predicate_type")
    assert "stella.ops/sbom@v1" in problem["detail"] and "https://slsa.dev/provenance/v1" in problem["detail"]


def test_a_poe_refusal_speaks_of_the_proof_of_entitlement(aws: Any, handlers: Any, licensing: Any) -> None:
    expired = poe_for(licensing, exp=1_700_000_000, iat=1_699_990_000, nbf=1_699_990_000)
    status, _, problem = _sign(handlers, {**BODY, "poe": {"format": "jwt", "value": expired}})
    assert (status, problem["code"]) == (403, "entitlement_denied")
    assert problem["detail"] == "the Proof-of-Entitlement has expired"
    status, _, problem = _sign(handlers, {**BODY, "poe": {"format": "jwt", "value": "not.a.jws"}})
    assert problem["detail"].startswith("the Proof-of-Entitlement is not a well-formed JWS")


@pytest.mark.parametrize(
    ("raw", "where"),
    [('{"subject": [', "line 1, column 14"), ('{\n  "predicate": {"a": 1,}\n}', "line 2, column 24")],
)
def test_malformed_json_says_where(aws: Any, handlers: Any, raw: str, where: str) -> None:
    status, _, problem = _sign(handlers, raw=raw)
    assert (status, problem["code"]) == (400, "invalid_request") and where in problem["detail"]


# --- one correlation id, one line per request (spec §5.7) -----------------------------------------


def test_one_correlation_id_runs_through_the_authorizer_the_function_and_the_audit_record(
    aws: Any,
    handlers: Any,
    raw_handlers: Any,
    authority: Any,
    client_cert: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GIVEN a request without X-Correlation-Id WHEN the authorizer mints one THEN the function's answer,
    its log line and its audit record carry that very id."""
    from tests.functions.conftest import authorizer_event, token_for

    event = authorizer_event(token_for(authority, client_cert), client_cert)
    for name in ("X-Correlation-Id",):
        event["headers"].pop(name, None)
        event["multiValueHeaders"].pop(name, None)
    decision = handlers["authenticate"](event)
    minted = decision["context"]["correlationId"]
    headers = {k: v for k, v in HEADERS.items() if k != "X-Correlation-Id"}
    headers["Authorization"] = event["headers"]["Authorization"]  # what API Gateway passes on
    sign = sign_event(BODY, context={**decision["context"], "principalId": "x"}, headers=headers)
    sign["requestContext"]["identity"]["clientCert"] = event["requestContext"]["identity"]["clientCert"]
    from stellaops_signer.observability import logger

    level = logger.log_level
    logger.setLevel("INFO")
    try:
        answer = raw_handlers["sign_dsse"](sign)
    finally:
        logger.setLevel(level)
    assert answer["statusCode"] == 200, answer["body"]
    assert response_headers(answer)["x-correlation-id"] == minted
    [record] = [r for r in aws.audit_records() if r["decision"] == "allow"]
    assert record["correlation_id"] == minted and record["route"] == "POST /api/v1/signer/sign/dsse"
    lines = [r for r in caplog.records if r.getMessage() == "request" and getattr(r, "status", None) == 200]
    assert [(r.route, r.tenant, r.auditId) for r in lines] == [  # type: ignore[attr-defined]
        ("POST /api/v1/signer/sign/dsse", "tenant-a", json.loads(answer["body"])["auditId"])
    ]
