"""The Proof-of-Entitlement matrix (spec §5.1, §8) through the real handlers: ``POST /sign/dsse``
and ``GET /quota`` (§3.4). Every refusal answers the §3.6 code, is audited with the PoE's
SHA-256 only, and never echoes the PoE."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from local.licensing import LocalLicensing
from stellaops_signer import wiring
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.domain.binding import certificate_thumbprint
from tests.conftest import load_event, poe_for, poe_identity
from tests.functions.conftest import Introspection, response_headers, sign_event

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
CONTEXT = load_event("sign_dsse/sign-dsse.json")["requestContext"]["authorizer"]
#: The event's headers without its Idempotency-Key: every call here is a new request.
HEADERS = {
    k: v for k, v in load_event("sign_dsse/sign-dsse.json")["headers"].items() if k != "Idempotency-Key"
}
CALLER_X5T = CONTEXT["senderKey"]  # the thumbprint of the event's client certificate
CALLER_JKT = "DPoP-key-thumbprint-of-the-caller-000000000"


# --- helpers ---------------------------------------------------------------------------------


def _sign(handlers: Any, poe: str, context: dict[str, Any] | None = None) -> tuple[int, dict[str, str], Any]:
    event = sign_event({**BODY, "poe": {"format": "jwt", "value": poe}}, context=context, headers=HEADERS)
    answer = handlers["sign_dsse"](event)
    return answer["statusCode"], response_headers(answer), json.loads(answer["body"])


def _signed(handlers: Any, poe: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    status, _, body = _sign(handlers, poe, context)
    assert status == 200, body
    return body


def _refused(
    handlers: Any, aws: Any, poe: str, status: int, code: str, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """THEN the answer is the problem of ``code``, audited as a denial holding only the PoE's identity."""
    got_status, headers, body = _sign(handlers, poe, context)
    assert (got_status, body.get("code")) == (status, code), body
    assert headers["content-type"] == "application/problem+json"
    assert "bundle" not in body and poe not in json.dumps(body)
    denials = [r for r in aws.audit_records() if r["decision"] == "deny"]
    assert [r["error_code"] for r in denials] == [code]
    assert denials[0]["poe_sha256"] == poe_identity(poe)
    assert all(poe not in json.dumps(r) for r in aws.audit_records())
    return body


def _claims(licensing: LocalLicensing, **overrides: Any) -> dict[str, Any]:
    return licensing.claims_for("tenant-a", "inst-1", **overrides)


def _quota(handlers: Any, poe: str | None) -> tuple[int, dict[str, Any]]:
    event = load_event("check_quota/quota.json")
    headers = {k: v for k, v in event["headers"].items() if k != "X-StellaOps-PoE"}
    if poe is not None:
        headers["X-StellaOps-PoE"] = poe
    event["headers"], event["multiValueHeaders"] = headers, {k: [v] for k, v in headers.items()}
    answer = handlers["check_quota"](event)
    return answer["statusCode"], json.loads(answer["body"])


def _freeze(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """Replace the container's clock before its adapters are built (they keep the one they got)."""
    clock = FixedClock(float(int(time.time())))
    monkeypatch.setattr(wiring.container(), "clock", clock)
    return clock


# --- a valid PoE -----------------------------------------------------------------------------


def test_valid_poe_is_accepted_and_audited_by_its_hash(aws: Any, handlers: Any, licensing: Any) -> None:
    poe = poe_for(licensing)
    body = _signed(handlers, poe)
    assert body["policy"]["plan"] == "pro" and body["policy"]["licenseId"] == "LIC-A-001"
    [record] = aws.audit_records()
    assert record["decision"] == "allow" and record["license_id"] == "LIC-A-001" and record["plan"] == "pro"
    assert record["poe_sha256"] == poe_identity(poe)
    assert poe not in json.dumps(record)


def test_poe_bound_to_the_callers_certificate_is_accepted(aws: Any, handlers: Any, licensing: Any) -> None:
    _signed(handlers, poe_for(licensing, cnf={"x5t#S256": CALLER_X5T}))


def test_poe_bound_to_the_callers_dpop_key_is_accepted(aws: Any, handlers: Any, licensing: Any) -> None:
    dpop_caller = {**CONTEXT, "binding": "dpop", "senderKey": CALLER_JKT}
    _signed(handlers, poe_for(licensing, cnf={"jkt": CALLER_JKT}), dpop_caller)


# --- the refusals of §5.1 --------------------------------------------------------------------


def test_request_without_a_poe_is_an_invalid_request(aws: Any, handlers: Any) -> None:
    body = {k: v for k, v in BODY.items() if k != "poe"}
    answer = handlers["sign_dsse"](sign_event(body, headers=HEADERS))
    assert (answer["statusCode"], json.loads(answer["body"])["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("value", ["not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30", "...."])
def test_malformed_poe_is_denied(aws: Any, handlers: Any, value: str) -> None:
    _refused(handlers, aws, value, 403, "entitlement_denied")


def test_poe_signed_by_another_key_with_the_licensing_kid_is_denied(
    aws: Any, handlers: Any, licensing: Any
) -> None:
    forged = licensing.mint(_claims(licensing), key=ec.generate_private_key(ec.SECP256R1()))
    _refused(handlers, aws, forged, 403, "entitlement_denied")


def test_poe_with_a_tampered_payload_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    header, _, signature = poe_for(licensing).split(".")
    richer = licensing.mint(_claims(licensing, plan="enterprise")).split(".")[1]
    _refused(handlers, aws, f"{header}.{richer}.{signature}", 403, "entitlement_denied")


def test_poe_from_another_issuer_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    poe = poe_for(licensing, iss="https://licensing.evil.example")
    _refused(handlers, aws, poe, 403, "entitlement_denied")


def test_expired_poe_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    now = int(time.time())
    poe = poe_for(licensing, iat=now - 3600, nbf=now - 3600, exp=now - 120)
    _refused(handlers, aws, poe, 403, "entitlement_denied")


def test_poe_not_yet_valid_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    poe = poe_for(licensing, nbf=int(time.time()) + 120)
    _refused(handlers, aws, poe, 403, "entitlement_denied")


def test_poe_of_another_tenant_is_a_tenant_mismatch(aws: Any, handlers: Any, licensing: Any) -> None:
    _refused(handlers, aws, poe_for(licensing, tenant="tenant-b"), 403, "tenant_mismatch")


def test_poe_of_another_installation_is_a_tenant_mismatch(aws: Any, handlers: Any, licensing: Any) -> None:
    _refused(handlers, aws, poe_for(licensing, installation="inst-2"), 403, "tenant_mismatch")


def test_poe_bound_to_another_certificate_is_denied(
    aws: Any, handlers: Any, licensing: Any, other_cert: Any
) -> None:
    poe = poe_for(licensing, cnf={"x5t#S256": certificate_thumbprint(other_cert.pem())})
    _refused(handlers, aws, poe, 403, "entitlement_denied")


def test_poe_bound_to_another_dpop_key_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    dpop_caller = {**CONTEXT, "binding": "dpop", "senderKey": CALLER_JKT}
    poe = poe_for(licensing, cnf={"jkt": "another-DPoP-key-thumbprint-000000000000000"})
    _refused(handlers, aws, poe, 403, "entitlement_denied", dpop_caller)


@pytest.mark.parametrize(
    ("case", "cnf"),
    [
        ("jkt for an mTLS caller, even with the certificate's thumbprint", {"jkt": CALLER_X5T}),
        ("both members", {"jkt": CALLER_JKT, "x5t#S256": CALLER_X5T}),
        ("an unknown member", {"x5t": CALLER_X5T}),
        ("not an object", [CALLER_X5T]),
        ("a non-string thumbprint", {"x5t#S256": 42}),
    ],
)
def test_poe_bound_to_the_wrong_kind_of_sender_key_is_denied(
    aws: Any, handlers: Any, licensing: Any, case: str, cnf: Any
) -> None:
    _refused(handlers, aws, poe_for(licensing, cnf=cnf), 403, "entitlement_denied")


def test_poe_with_an_unknown_plan_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    _refused(handlers, aws, poe_for(licensing, plan="enterprise"), 403, "entitlement_denied")


def test_scanner_released_after_the_licence_window_is_denied(aws: Any, handlers: Any, licensing: Any) -> None:
    """The verified scanner is a 2027 release; this licence covers releases up to 2026."""
    _refused(handlers, aws, poe_for(licensing, valid_release_year=2026), 403, "entitlement_denied")


def test_scanner_released_in_the_last_covered_year_is_accepted(
    aws: Any, handlers: Any, licensing: Any
) -> None:
    _signed(handlers, poe_for(licensing, valid_release_year=2027))


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("no license_id", {"license_id": None}),
        ("empty license_id", {"license_id": ""}),
        ("sub is not the licence id", {"sub": "LIC-OTHER"}),
        ("no customer_id", {"customer_id": None}),
        ("no plan", {"plan": None}),
        ("no valid_release_year", {"valid_release_year": None}),
        ("valid_release_year a string", {"valid_release_year": "2027"}),
        ("valid_release_year a float", {"valid_release_year": 2027.0}),
        ("valid_release_year a boolean", {"valid_release_year": True}),
        ("no exp", {"exp": None}),
        ("no iat", {"iat": None}),
    ],
)
def test_poe_missing_a_required_claim_is_denied(
    aws: Any, handlers: Any, licensing: Any, case: str, overrides: dict[str, Any]
) -> None:
    _refused(handlers, aws, poe_for(licensing, **overrides), 403, "entitlement_denied")


# --- online confirmation (introspection) and its cache ---------------------------------------


def test_poe_confirmed_active_by_introspection_is_accepted(
    handlers: Any, licensing: Any, introspection: Introspection
) -> None:
    _signed(handlers, poe_for(licensing))
    assert introspection.calls == ["/license/introspect"]


def test_revoked_poe_is_denied(aws: Any, handlers: Any, licensing: Any, introspection: Introspection) -> None:
    poe = poe_for(licensing)
    introspection.revoke(poe)
    _refused(handlers, aws, poe, 403, "entitlement_denied")


def test_introspection_down_with_nothing_cached_is_entitlement_unavailable(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection
) -> None:
    licensing.introspection_down = True
    _refused(handlers, aws, poe_for(licensing), 503, "entitlement_unavailable")


def test_introspection_down_after_a_cached_active_answer_still_signs(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection
) -> None:
    poe = poe_for(licensing)
    _signed(handlers, poe)
    licensing.introspection_down = True
    _signed(handlers, poe)
    assert len(introspection.calls) == 1


def test_cached_answer_survives_a_cold_start_and_is_keyed_by_the_poe_hash(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection
) -> None:
    poe = poe_for(licensing)
    _signed(handlers, poe)
    wiring.reset()  # a new Lambda container: only DynamoDB remembers
    licensing.introspection_down = True
    _signed(handlers, poe)
    items = aws.client("dynamodb").scan(TableName=aws.environment["SIGNER_CACHE_TABLE"])["Items"]
    keys = {item["pk"]["S"] for item in items}
    assert "poe#" + poe_identity(poe) in keys
    assert poe not in json.dumps(items)


def test_cached_answer_is_not_served_after_the_poe_expires(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """min(PoeCacheTtlSeconds, exp − now): a PoE with 5 s left is cached for 5 s, even though
    the ±30 s skew still accepts its signature for a while."""
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), exp=int(clock.now()) + 5)
    _signed(handlers, poe)
    licensing.introspection_down = True
    clock.advance(4)
    _signed(handlers, poe)
    clock.advance(2)
    _refused(handlers, aws, poe, 503, "entitlement_unavailable")


def test_cached_answer_is_not_served_after_poe_cache_ttl_seconds(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNER_POE_CACHE_TTL_SECONDS", "10")
    wiring.reset()
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    _signed(handlers, poe)
    licensing.introspection_down = True
    clock.advance(9)
    _signed(handlers, poe)
    clock.advance(2)
    _refused(handlers, aws, poe, 503, "entitlement_unavailable")


def test_revocation_takes_effect_when_the_cached_answer_expires(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNER_POE_CACHE_TTL_SECONDS", "10")
    wiring.reset()
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    _signed(handlers, poe)
    introspection.revoke(poe)
    _signed(handlers, poe)  # still within the cached answer's lifetime
    clock.advance(11)
    _refused(handlers, aws, poe, 403, "entitlement_denied")


def test_poe_never_appears_in_the_logs(
    aws: Any, handlers: Any, licensing: Any, introspection: Introspection, caplog: pytest.LogCaptureFixture
) -> None:
    from stellaops_signer.observability import logger

    accepted, revoked = poe_for(licensing), poe_for(licensing, customer_id="CUST-A2")
    introspection.revoke(revoked)
    level = logger.log_level
    logger.setLevel("DEBUG")
    try:
        _signed(handlers, accepted)
        _sign(handlers, revoked)
        _sign(handlers, poe_for(licensing, iss="https://licensing.evil.example"))
        _quota(handlers, accepted)
    finally:
        logger.setLevel(level)
    logs = " ".join(str(record.__dict__) for record in caplog.records)
    assert "entitlement_denied" in logs  # the request lines, with their extra fields, were captured
    assert "eyJ" not in logs  # no JWS at all: neither a PoE nor a token


# --- GET /api/v1/signer/quota ---------------------------------------------------------------


def test_quota_without_a_poe_header_is_denied(aws: Any, handlers: Any) -> None:
    status, body = _quota(handlers, None)
    assert (status, body["code"]) == (403, "entitlement_denied")


def test_quota_with_a_valid_poe_answers_plan_limits_usage_and_resets(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    now = int(clock.now())
    to_midnight = 86400 - now % 86400
    status, body = _quota(handlers, poe_for(licensing, now=now))
    assert status == 200, body
    assert body == {
        "plan": "pro",
        "licenseId": "LIC-A-001",
        "validReleaseYear": 2027,
        "limits": {"qps": 10, "concurrency": 5, "maxArtifactBytes": 10485760, "dailySignatures": 10000},
        "usage": {"qps": 0, "inFlight": 0, "daily": 0},
        "remaining": {"qps": 10, "concurrency": 5, "daily": 10000},
        "resets": {
            "qpsInSeconds": 1,
            "dailyInSeconds": to_midnight,
            "dailyAt": datetime.fromtimestamp(now + to_midnight, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def test_quota_with_another_tenants_poe_is_a_tenant_mismatch(aws: Any, handlers: Any, licensing: Any) -> None:
    status, body = _quota(handlers, poe_for(licensing, tenant="tenant-b"))
    assert (status, body["code"]) == (403, "tenant_mismatch")


def test_quota_with_an_invalid_poe_never_echoes_it(aws: Any, handlers: Any, licensing: Any) -> None:
    poe = poe_for(licensing, iss="https://licensing.evil.example")
    status, body = _quota(handlers, poe)
    assert (status, body["code"]) == (403, "entitlement_denied")
    assert poe not in json.dumps(body)
