"""The Proof-of-Entitlement matrix (spec §5.1, §8) through the real handlers: ``POST /sign/dsse``
and ``GET /quota`` (§3.4). Every refusal answers the §3.6 code, is audited with the PoE's
SHA-256 only, and never echoes the PoE."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
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
MTLS_CALLER = CONTEXT  # the event's caller, bound to its client certificate
DPOP_CALLER = {**CONTEXT, "binding": "dpop", "senderKey": CALLER_JKT}
OTHER_CERT = "<the other_cert fixture's thumbprint>"  # a cnf value, filled in by the test
ANOTHER_JKT = "another-DPoP-key-thumbprint-000000000000000"
EVIL_ISSUER = "https://licensing.evil.example"

#: Outcomes: the answer's status and §3.6 code.
SIGNED = (200, None)
DENIED = (403, "entitlement_denied")
MISMATCH = (403, "tenant_mismatch")
UNAVAILABLE = (503, "entitlement_unavailable")


@dataclass(frozen=True)
class Now:
    """A time claim: the moment the PoE is minted, plus ``seconds``."""

    seconds: int


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


def _answers(
    handlers: Any, aws: Any, poe: str, outcome: tuple[int, str | None], context: dict[str, Any] | None = None
) -> None:
    """THEN the request is signed, or refused with ``outcome`` as ``_refused`` checks it."""
    status, code = outcome
    if code is None:
        _signed(handlers, poe, context)
    else:
        _refused(handlers, aws, poe, status, code, context)


def _poe(licensing: LocalLicensing, now: float | None = None, **args: Any) -> str:
    """``poe_for(licensing, now=now, **args)``, each Now counted from ``now`` (else the wall clock)."""
    at = int(now if now is not None else time.time())
    resolved = {name: at + v.seconds if isinstance(v, Now) else v for name, v in args.items()}
    return poe_for(licensing, now=now, **resolved)


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


# --- the checks of §5.1 ----------------------------------------------------------------------


def test_request_without_a_poe_is_an_invalid_request(aws: Any, handlers: Any) -> None:
    body = {k: v for k, v in BODY.items() if k != "poe"}
    answer = handlers["sign_dsse"](sign_event(body, headers=HEADERS))
    assert (answer["statusCode"], json.loads(answer["body"])["code"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not-a-jwt", id="not a JWS"),
        pytest.param("a.b.c", id="three parts of junk"),
        pytest.param("eyJhbGciOiJFUzI1NiJ9.e30", id="no signature part"),
        pytest.param("....", id="only dots"),
    ],
)
def test_malformed_poe_is_denied(aws: Any, handlers: Any, value: str) -> None:
    _refused(handlers, aws, value, 403, "entitlement_denied")


def _signed_by_another_key(licensing: LocalLicensing) -> str:
    return licensing.mint(_claims(licensing), key=ec.generate_private_key(ec.SECP256R1()))


def _payload_swapped_for_a_richer_one(licensing: LocalLicensing) -> str:
    header, _, signature = poe_for(licensing).split(".")
    richer = licensing.mint(_claims(licensing, plan="enterprise")).split(".")[1]
    return f"{header}.{richer}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_signed_by_another_key, id="signed by another key with the Licensing's kid"),
        pytest.param(_payload_swapped_for_a_richer_one, id="tampered payload"),
    ],
)
def test_forged_poe_is_denied(
    aws: Any, handlers: Any, licensing: Any, forge: Callable[[LocalLicensing], str]
) -> None:
    _refused(handlers, aws, forge(licensing), 403, "entitlement_denied")


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        # poe_for's arguments (None removes a claim) → the outcome; the scanner is a 2027 release
        pytest.param({"valid_release_year": 2027}, SIGNED, id="licence covers the scanner's year"),
        pytest.param({"valid_release_year": 2026}, DENIED, id="scanner released after the licence window"),
        pytest.param({"iss": EVIL_ISSUER}, DENIED, id="another issuer"),
        pytest.param({"iat": Now(-3600), "nbf": Now(-3600), "exp": Now(-120)}, DENIED, id="expired"),
        pytest.param({"nbf": Now(+120)}, DENIED, id="not yet valid"),
        pytest.param({"tenant": "tenant-b"}, MISMATCH, id="another tenant"),
        pytest.param({"installation": "inst-2"}, MISMATCH, id="another installation"),
        pytest.param({"plan": "enterprise"}, DENIED, id="unknown plan"),
        # a required claim missing or mistyped
        pytest.param({"license_id": None}, DENIED, id="no license_id"),
        pytest.param({"license_id": ""}, DENIED, id="empty license_id"),
        pytest.param({"sub": "LIC-OTHER"}, DENIED, id="sub is not the licence id"),
        pytest.param({"customer_id": None}, DENIED, id="no customer_id"),
        pytest.param({"plan": None}, DENIED, id="no plan"),
        pytest.param({"valid_release_year": None}, DENIED, id="no valid_release_year"),
        pytest.param({"valid_release_year": "2027"}, DENIED, id="valid_release_year a string"),
        pytest.param({"valid_release_year": 2027.0}, DENIED, id="valid_release_year a float"),
        pytest.param({"valid_release_year": True}, DENIED, id="valid_release_year a boolean"),
        pytest.param({"exp": None}, DENIED, id="no exp"),
        pytest.param({"iat": None}, DENIED, id="no iat"),
    ],
)
def test_poe_claims_decide_the_outcome(
    aws: Any, handlers: Any, licensing: Any, args: dict[str, Any], outcome: tuple[int, str | None]
) -> None:
    _answers(handlers, aws, _poe(licensing, **args), outcome)


@pytest.mark.parametrize(
    ("caller", "cnf", "outcome"),
    [
        # the caller, the PoE's cnf → the outcome: only the caller's own key, of its kind, is accepted
        pytest.param(MTLS_CALLER, {"x5t#S256": CALLER_X5T}, SIGNED, id="mTLS caller, its certificate"),
        pytest.param(DPOP_CALLER, {"jkt": CALLER_JKT}, SIGNED, id="DPoP caller, its key"),
        pytest.param(MTLS_CALLER, {"x5t#S256": OTHER_CERT}, DENIED, id="mTLS caller, another certificate"),
        pytest.param(DPOP_CALLER, {"jkt": ANOTHER_JKT}, DENIED, id="DPoP caller, another key"),
        # the wrong kind of sender key, for an mTLS caller
        pytest.param(MTLS_CALLER, {"jkt": CALLER_X5T}, DENIED, id="jkt, even of the certificate"),
        pytest.param(MTLS_CALLER, {"jkt": CALLER_JKT, "x5t#S256": CALLER_X5T}, DENIED, id="both members"),
        pytest.param(MTLS_CALLER, {"x5t": CALLER_X5T}, DENIED, id="an unknown member"),
        pytest.param(MTLS_CALLER, [CALLER_X5T], DENIED, id="not an object"),
        pytest.param(MTLS_CALLER, {"x5t#S256": 42}, DENIED, id="a non-string thumbprint"),
    ],
)
def test_poe_bound_to_a_sender_key(
    aws: Any,
    handlers: Any,
    licensing: Any,
    other_cert: Any,
    caller: dict[str, Any],
    cnf: Any,
    outcome: tuple[int, str | None],
) -> None:
    if cnf == {"x5t#S256": OTHER_CERT}:
        cnf = {"x5t#S256": certificate_thumbprint(other_cert.pem())}
    _answers(handlers, aws, poe_for(licensing, cnf=cnf), outcome, caller)


# --- online confirmation (introspection) and its cache ---------------------------------------


def _revoked(introspection: Introspection, poe: str) -> None:
    introspection.revoke(poe)


def _licensing_down(introspection: Introspection, poe: str) -> None:
    introspection.licensing.introspection_down = True


Change = Callable[[Introspection, str], None]


def test_poe_confirmed_active_by_introspection_is_accepted(
    handlers: Any, licensing: Any, introspection: Introspection
) -> None:
    _signed(handlers, poe_for(licensing))
    assert introspection.calls == ["/license/introspect"]


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        pytest.param(_revoked, DENIED, id="revoked"),
        pytest.param(_licensing_down, UNAVAILABLE, id="Licensing down, nothing cached"),
    ],
)
def test_poe_not_confirmed_by_introspection_is_refused(
    aws: Any,
    handlers: Any,
    licensing: Any,
    introspection: Introspection,
    change: Change,
    outcome: tuple[int, str],
) -> None:
    poe = poe_for(licensing)
    change(introspection, poe)
    _refused(handlers, aws, poe, *outcome)


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


@pytest.mark.parametrize(
    ("ttl", "args", "change", "still_signs_at", "refused_at", "outcome"),
    [
        # PoeCacheTtlSeconds, poe_for's arguments, what changes after the first signing,
        # seconds after it when the cached answer still signs, and when it no longer does → outcome
        pytest.param(None, {"exp": Now(+5)}, _licensing_down, 4, 6, UNAVAILABLE, id="the PoE's exp first"),
        pytest.param("10", {}, _licensing_down, 9, 11, UNAVAILABLE, id="PoeCacheTtlSeconds first"),
        pytest.param("10", {}, _revoked, 0, 11, DENIED, id="revocation, once the cached answer expires"),
    ],
)
def test_cached_answer_is_served_until_it_expires(
    aws: Any,
    handlers: Any,
    licensing: Any,
    introspection: Introspection,
    monkeypatch: pytest.MonkeyPatch,
    ttl: str | None,
    args: dict[str, Any],
    change: Change,
    still_signs_at: int,
    refused_at: int,
    outcome: tuple[int, str],
) -> None:
    """A cached answer lives min(PoeCacheTtlSeconds, exp − now): a PoE with 5 s left is cached
    for 5 s, even though the ±30 s skew still accepts its signature for a while."""
    if ttl is not None:
        monkeypatch.setenv("SIGNER_POE_CACHE_TTL_SECONDS", ttl)
        wiring.reset()
    clock = _freeze(monkeypatch)
    poe = _poe(licensing, now=clock.now(), **args)
    _signed(handlers, poe)
    change(introspection, poe)
    clock.advance(still_signs_at)
    _signed(handlers, poe)
    clock.advance(refused_at - still_signs_at)
    _refused(handlers, aws, poe, *outcome)


def test_a_remembered_poe_is_refused_once_it_expires(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container remembers what a verified PoE grants its caller; its times are checked on every
    use all the same."""
    clock = _freeze(monkeypatch)
    poe = _poe(licensing, now=clock.now(), iat=Now(-10), exp=Now(+60))
    _signed(handlers, poe)
    clock.advance(60 + 29)  # within the ±30 s skew: still accepted
    _signed(handlers, poe)
    clock.advance(1)
    _refused(handlers, aws, poe, *DENIED)


def test_a_remembered_poe_is_read_again_for_another_caller(aws: Any, handlers: Any, licensing: Any) -> None:
    """A PoE bound to one DPoP key, accepted for its caller, is refused to the mTLS caller of the same
    tenant: what it grants is remembered per caller."""
    poe = poe_for(licensing, cnf={"jkt": CALLER_JKT})
    _signed(handlers, poe, DPOP_CALLER)
    _refused(handlers, aws, poe, *DENIED, context=MTLS_CALLER)
    _signed(handlers, poe, DPOP_CALLER)


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
        _sign(handlers, poe_for(licensing, iss=EVIL_ISSUER))
        _quota(handlers, accepted)
    finally:
        logger.setLevel(level)
    logs = " ".join(str(record.__dict__) for record in caplog.records)
    assert "entitlement_denied" in logs  # the request lines, with their extra fields, were captured
    assert "eyJ" not in logs  # no JWS at all: neither a PoE nor a token


# --- GET /api/v1/signer/quota ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        # poe_for's arguments (None: no X-StellaOps-PoE header) → the refusal
        pytest.param(None, DENIED, id="no PoE header"),
        pytest.param({"tenant": "tenant-b"}, MISMATCH, id="another tenant"),
        pytest.param({"iss": EVIL_ISSUER}, DENIED, id="another issuer"),
    ],
)
def test_quota_refuses_a_missing_or_invalid_poe_without_echoing_it(
    aws: Any, handlers: Any, licensing: Any, args: dict[str, Any] | None, outcome: tuple[int, str]
) -> None:
    poe = None if args is None else _poe(licensing, **args)
    status, body = _quota(handlers, poe)
    assert (status, body["code"]) == outcome
    assert poe is None or poe not in json.dumps(body)


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
