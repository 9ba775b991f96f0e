"""The authorizer (functions/authenticate) refuses every token that is not sender-constrained to the caller.

Each refusal is a Deny whose context carries the spec's code and the WWW-Authenticate
challenge that the gateway response turns into a 401 (spec §3.1, §3.6, §8).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.functions.conftest import authorizer_event, token_for


def _decide(handlers: Any, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    answer = handlers["authenticate"](event)
    return answer["policyDocument"]["Statement"][0]["Effect"], answer.get("context") or {}


def _assert_refused(handlers: Any, event: dict[str, Any], code: str = "invalid_token") -> dict[str, Any]:
    effect, context = _decide(handlers, event)
    assert effect == "Deny"
    assert context["errorCode"] == code
    assert context["wwwAuthenticate"].startswith("Bearer ") or context["wwwAuthenticate"].startswith("DPoP ")
    assert f'error="{code}"' in context["wwwAuthenticate"]
    return context


def test_certificate_bound_token_over_mtls_is_allowed(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    effect, context = _decide(handlers, authorizer_event(token_for(authority, client_cert), client_cert))
    assert effect == "Allow"
    assert context["tid"] == "tenant-a" and context["inst"] == "inst-1" and context["binding"] == "mtls"
    assert set(context["scope"].split()) == {"signer.sign", "signer.verify"}


def test_allow_covers_only_the_requested_method_and_path(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    answer = handlers["authenticate"](authorizer_event(token_for(authority, client_cert), client_cert))
    resources = answer["policyDocument"]["Statement"][0]["Resource"]
    assert resources == ["arn:aws:execute-api:us-east-1:123456789012:local/v1/POST/api/v1/signer/sign/dsse"]


def test_missing_authorization_is_refused(aws: Any, handlers: Any, client_cert: Any) -> None:
    _assert_refused(handlers, authorizer_event(None, client_cert))


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token abc"])
def test_malformed_authorization_is_refused(aws: Any, handlers: Any, client_cert: Any, value: str) -> None:
    event = authorizer_event(None, client_cert, extra_headers={"Authorization": value})
    _assert_refused(handlers, event)


def test_token_bound_to_another_certificate_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any, other_cert: Any
) -> None:
    context = _assert_refused(handlers, authorizer_event(token_for(authority, other_cert), client_cert))
    assert "another client certificate" in context["errorDetail"]


def test_certificate_bound_token_without_client_certificate_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    _assert_refused(handlers, authorizer_event(token_for(authority, client_cert), None))


def test_dpop_bound_token_sent_as_bearer_is_refused_as_downgrade(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    context = _assert_refused(handlers, authorizer_event(token_for(authority, None), client_cert))
    assert "DPoP" in context["errorDetail"]


def test_unbound_bearer_token_is_refused(aws: Any, handlers: Any, authority: Any, client_cert: Any) -> None:
    _assert_refused(handlers, authorizer_event(token_for(authority, client_cert, cnf=None), client_cert))


def test_token_with_both_confirmation_members_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    from stellaops_signer.domain.binding import certificate_thumbprint

    cnf = {"x5t#S256": certificate_thumbprint(client_cert.pem()), "jkt": "A" * 43}
    _assert_refused(handlers, authorizer_event(token_for(authority, client_cert, cnf=cnf), client_cert))


def test_expired_token_is_refused(aws: Any, handlers: Any, authority: Any, client_cert: Any) -> None:
    now = int(time.time())
    token = token_for(authority, client_cert, iat=now - 400, nbf=now - 400, exp=now - 60)
    assert "expired" in _assert_refused(handlers, authorizer_event(token, client_cert))["errorDetail"]


def test_token_from_the_future_is_refused(aws: Any, handlers: Any, authority: Any, client_cert: Any) -> None:
    now = int(time.time())
    token = token_for(authority, client_cert, iat=now + 120, nbf=now + 120, exp=now + 400)
    _assert_refused(handlers, authorizer_event(token, client_cert))


def test_token_living_longer_than_the_maximum_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    now = int(time.time())
    token = token_for(authority, client_cert, iat=now, exp=now + 601)
    _assert_refused(handlers, authorizer_event(token, client_cert))


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example"},
        {"aud": "scanner"},
        {"aud": ["signer", "attestor"]},
        {"aud": None},
        {"tid": None},
        {"inst": None},
    ],
)
def test_token_with_wrong_issuer_audience_or_tenant_claims_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any, claims: dict[str, Any]
) -> None:
    _assert_refused(handlers, authorizer_event(token_for(authority, client_cert, **claims), client_cert))


def test_single_member_audience_list_is_accepted(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    effect, _ = _decide(
        handlers, authorizer_event(token_for(authority, client_cert, aud=["signer"]), client_cert)
    )
    assert effect == "Allow"


def _claims(authority: Any, cert: Any) -> dict[str, Any]:
    from stellaops_signer.domain.binding import certificate_thumbprint

    return authority.claims_for("scanner-1", cnf={"x5t#S256": certificate_thumbprint(cert.pem())})


def test_alg_none_token_is_refused(aws: Any, handlers: Any, authority: Any, client_cert: Any) -> None:
    token = jwt.encode(
        _claims(authority, client_cert), None, algorithm="none", headers={"kid": authority.kid}
    )
    _assert_refused(handlers, authorizer_event(token, client_cert))


def test_hs256_token_keyed_with_the_public_key_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    public_pem = authority.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac
    import json

    from stellaops_signer.domain.jose import b64url

    # Built by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret.
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": authority.kid}).encode())
    payload = b64url(json.dumps(_claims(authority, client_cert)).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    _assert_refused(handlers, authorizer_event(f"{header}.{payload}.{b64url(mac)}", client_cert))


def test_token_signed_by_an_unknown_key_is_refused(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    stranger = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        _claims(authority, client_cert), stranger, algorithm="ES256", headers={"kid": authority.kid}
    )
    _assert_refused(handlers, authorizer_event(token, client_cert))
    token = jwt.encode(
        _claims(authority, client_cert), stranger, algorithm="ES256", headers={"kid": "unknown"}
    )
    assert "unknown" in _assert_refused(handlers, authorizer_event(token, client_cert))["errorDetail"]


def test_denials_are_audited_without_the_token(
    aws: Any, handlers: Any, authority: Any, client_cert: Any, other_cert: Any
) -> None:
    token = token_for(authority, other_cert)
    _assert_refused(handlers, authorizer_event(token, client_cert))
    records = aws.audit_records()
    assert len(records) == 1
    assert records[0]["decision"] == "deny" and records[0]["error_code"] == "invalid_token"
    assert token not in str(records)


def test_correlation_id_is_echoed_into_the_authorizer_context(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    event = authorizer_event(
        token_for(authority, client_cert), client_cert, extra_headers={"X-Correlation-Id": "trace-42"}
    )
    assert _decide(handlers, event)[1]["correlationId"] == "trace-42"


def test_denial_context_is_safe_for_gateway_templates(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    import json

    from stellaops_signer.domain.jose import b64url

    header = b64url(json.dumps({"alg": 'x"}, "status": 200, "a\\\n'}).encode())
    payload = b64url(json.dumps(_claims(authority, client_cert)).encode())
    context = _assert_refused(handlers, authorizer_event(f"{header}.{payload}.c2ln", client_cert))
    assert context["wwwAuthenticate"].count('"') == 4
    assert '"' not in context["errorDetail"] and "\\" not in context["errorDetail"]
    rendered = '{"detail":"' + context["errorDetail"] + '"}'
    assert json.loads(rendered)["detail"] == context["errorDetail"]
