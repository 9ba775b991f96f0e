"""Side channels around the JOSE parser, through the real handlers (spec §3.1, §5.1, §8).

A token, proof or PoE that repeats a member name is signed correctly over its exact bytes, so the
only thing between it and acceptance is the Signer reading JSON as JOSE must (RFC 7515 §4, RFC 7519
§4). A PoE is one PoE however it is spelled or whichever of its two ECDSA signatures it carries: the
audit record, the introspection cache and Licensing's revocation list all name it by its identity.
A JWKS fetched by URL keeps working when the issuer publishes a key the Signer cannot use.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from local.authority import LocalAuthority
from local.dpop import DpopKey
from local.licensing import LocalLicensing
from local.pki import Issued
from stellaops_signer import wiring
from stellaops_signer.domain.binding import certificate_thumbprint
from tests.conftest import PUBLIC_BASE_URL, load_event, poe_for, poe_identity
from tests.functions.conftest import Introspection, authorizer_event, response_headers, sign_event, token_for
from tests.http_double import ScriptedServer
from tests.jose_assembly import b64url, b64url_decode, es256, repeating, text

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
#: The event's headers without its Idempotency-Key: every call here is a new request.
HEADERS = {
    k: v for k, v in load_event("sign_dsse/sign-dsse.json")["headers"].items() if k != "Idempotency-Key"
}
URL = PUBLIC_BASE_URL + "/api/v1/signer/sign/dsse"
#: The order of the P-256 group (SEC 2 §2.4.2).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# --- hand assembly ------------------------------------------------------------------------------


def _s(token: str) -> int:
    return int.from_bytes(b64url_decode(token.split(".")[2])[32:], "big")


def high_s(token: str) -> str:
    """The (r, n − s) twin of an ES256 signature, re-encoded as R‖S."""
    signing_input, _, signature = token.rpartition(".")
    raw = b64url_decode(signature)
    twin_s = P256_ORDER - int.from_bytes(raw[32:], "big")
    return f"{signing_input}.{b64url(raw[:32] + twin_s.to_bytes(32, 'big'))}"


def reencoded(token: str, private_key: ec.EllipticCurvePrivateKey) -> str:
    """The same header and claims, members reversed and indented, signed again."""
    parts = [json.loads(b64url_decode(part)) for part in token.split(".")[:2]]
    header, claims = (json.dumps(dict(reversed(list(part.items()))), indent=2) for part in parts)
    return es256(private_key, header, claims)


def respelled(token: str) -> str:
    """The signature segment spelled otherwise in base64url: its last character's 4 unused bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, last = token[:-1], token[-1]
    return head + alphabet[alphabet.index(last) | 0b0101]


TWINS = ("re-encoded", "high-S", "base64url-respelled")


def twin_of(kind: str, poe: str, licensing: LocalLicensing) -> str:
    twin = {
        "re-encoded": lambda: reencoded(poe, licensing.key),
        "high-S": lambda: high_s(poe),
        "base64url-respelled": lambda: respelled(poe),
    }[kind]()
    assert twin != poe and poe_identity(twin) == poe_identity(poe)
    return twin


def low_s_poe(licensing: LocalLicensing, **claims: Any) -> str:
    """A fresh PoE whose signature has a low S, so that its (r, n − s) twin has a high one."""
    for _ in range(64):
        poe = poe_for(licensing, **claims)
        if _s(poe) <= P256_ORDER // 2:
            return poe
    raise AssertionError("64 signatures in a row with a high S")


# --- the authorizer -----------------------------------------------------------------------------


def _decide(handlers: Any, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    answer = handlers["authenticate"](event)
    return answer["policyDocument"]["Statement"][0]["Effect"], answer.get("context") or {}


def _denied(handlers: Any, event: dict[str, Any], code: str) -> dict[str, Any]:
    effect, context = _decide(handlers, event)
    assert (effect, context.get("errorCode")) == ("Deny", code), context
    assert f'error="{code}"' in context["wwwAuthenticate"]
    return context


def _op_claims(authority: LocalAuthority, cert: Issued) -> dict[str, Any]:
    return authority.claims_for("scanner-1", cnf={"x5t#S256": certificate_thumbprint(cert.pem())})


def _op_header(authority: LocalAuthority) -> str:
    return text({"alg": "ES256", "kid": authority.kid, "typ": "JWT"})


def test_hand_assembled_optok_is_allowed(
    aws: Any, handlers: Any, authority: LocalAuthority, client_cert: Issued
) -> None:
    """The control: the refusals below differ from this token only by a repeated member."""
    token = es256(authority.key, _op_header(authority), text(_op_claims(authority, client_cert)))
    assert _decide(handlers, authorizer_event(token, client_cert))[0] == "Allow"


def test_optok_whose_header_repeats_alg_is_an_invalid_token(
    aws: Any, handlers: Any, authority: LocalAuthority, client_cert: Issued
) -> None:
    """GIVEN ``{"alg":"none","alg":"ES256",…}`` signed by the Authority over those exact bytes."""
    header = f'{{"alg":"none","alg":"ES256","kid":"{authority.kid}","typ":"JWT"}}'
    token = es256(authority.key, header, text(_op_claims(authority, client_cert)))
    context = _denied(handlers, authorizer_event(token, client_cert), "invalid_token")
    assert "unique member names" in context["errorDetail"]


@pytest.mark.parametrize("first", [False, True], ids=["tenant-a-then-tenant-b", "tenant-b-then-tenant-a"])
def test_optok_whose_claims_repeat_tid_is_an_invalid_token(
    aws: Any, handlers: Any, authority: LocalAuthority, client_cert: Issued, first: bool
) -> None:
    """Whichever reading another parser picks (the header names tenant-a), none is picked here."""
    claims = repeating(_op_claims(authority, client_cert), "tid", "tenant-b", first=first)
    token = es256(authority.key, _op_header(authority), claims)
    context = _denied(handlers, authorizer_event(token, client_cert), "invalid_token")
    assert "unique member names" in context["errorDetail"]


class DpopCaller:
    """A DPoP client holding a token bound to its key and a server nonce."""

    def __init__(self, handlers: Any, authority: LocalAuthority) -> None:
        self.handlers = handlers
        self.key = DpopKey()
        self.token = token_for(authority, None, cnf={"jkt": self.key.thumbprint})
        effect, context = _decide(handlers, self.event(self.key.proof("POST", URL, access_token=self.token)))
        assert (effect, context.get("errorCode")) == ("Deny", "use_dpop_nonce"), context
        self.nonce: str = context["dpopNonce"]

    def claims(self) -> dict[str, Any]:
        ath = b64url(hashlib.sha256(self.token.encode()).digest())
        return {
            "jti": f"proof-{time.time_ns()}",
            "htm": "POST",
            "htu": URL,
            "iat": int(time.time()),
            "ath": ath,
            "nonce": self.nonce,
        }

    def header(self, jwk: str | None = None) -> str:
        jwk_text = jwk if jwk is not None else text(self.key.public_jwk)
        return '{"typ":"dpop+jwt","alg":"ES256","jwk":' + jwk_text + "}"

    def event(self, proof: str) -> dict[str, Any]:
        event = authorizer_event(self.token, None, scheme="DPoP")
        event["headers"]["DPoP"] = proof
        event["multiValueHeaders"]["DPoP"] = [proof]
        return event


@pytest.fixture
def dpop_caller(aws: Any, handlers: Any, authority: LocalAuthority) -> DpopCaller:
    return DpopCaller(handlers, authority)


def test_hand_assembled_dpop_proof_is_allowed(dpop_caller: DpopCaller) -> None:
    proof = es256(dpop_caller.key.private_key, dpop_caller.header(), text(dpop_caller.claims()))
    assert _decide(dpop_caller.handlers, dpop_caller.event(proof))[0] == "Allow"


@pytest.mark.parametrize("first", [False, True], ids=["POST-then-GET", "GET-then-POST"])
def test_dpop_proof_whose_claims_repeat_htm_is_an_invalid_dpop_proof(
    dpop_caller: DpopCaller, first: bool
) -> None:
    claims = repeating(dpop_caller.claims(), "htm", "GET", first=first)
    proof = es256(dpop_caller.key.private_key, dpop_caller.header(), claims)
    context = _denied(dpop_caller.handlers, dpop_caller.event(proof), "invalid_dpop_proof")
    assert "unique member names" in context["errorDetail"]


def test_dpop_proof_whose_jwk_repeats_a_member_is_an_invalid_dpop_proof(dpop_caller: DpopCaller) -> None:
    stranger = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    jwk = repeating(dpop_caller.key.public_jwk, "x", stranger["x"], first=True)
    proof = es256(dpop_caller.key.private_key, dpop_caller.header(jwk), text(dpop_caller.claims()))
    _denied(dpop_caller.handlers, dpop_caller.event(proof), "invalid_dpop_proof")


# --- the sign handler: PoEs ---------------------------------------------------------------------


def _sign(handlers: Any, poe: str) -> tuple[int, dict[str, str], Any]:
    event = sign_event({**BODY, "poe": {"format": "jwt", "value": poe}}, headers=HEADERS)
    answer = handlers["sign_dsse"](event)
    return answer["statusCode"], response_headers(answer), json.loads(answer["body"])


def _signed(handlers: Any, poe: str) -> dict[str, Any]:
    status, _, body = _sign(handlers, poe)
    assert status == 200, body
    return body


def _refused(handlers: Any, aws: Any, poe: str, code: str = "entitlement_denied") -> dict[str, Any]:
    """THEN 403 ``code`` as problem+json, audited as the one denial; the audit record it returns."""
    status, headers, body = _sign(handlers, poe)
    assert (status, body.get("code")) == (403, code), body
    assert headers["content-type"] == "application/problem+json"
    [denial] = [r for r in aws.audit_records() if r["decision"] == "deny"]
    assert denial["error_code"] == code
    assert all(poe not in json.dumps(r) for r in aws.audit_records())
    return denial


@pytest.mark.parametrize("first", [True, False], ids=["tenant-b-then-tenant-a", "tenant-a-then-tenant-b"])
def test_poe_whose_claims_repeat_tid_is_entitlement_denied_and_audited(
    aws: Any, handlers: Any, licensing: LocalLicensing, first: bool
) -> None:
    """A last-wins reader of tenant-b-then-tenant-a would accept it for the caller's tenant, a first-wins
    reader would answer tenant_mismatch; the Signer denies it, and audits the SHA-256 of its text (a PoE
    with two tenants has no one set of claims for an identity)."""
    claims = repeating(licensing.claims_for("tenant-a", "inst-1"), "tid", "tenant-b", first=first)
    poe = es256(licensing.key, text({"alg": "ES256", "kid": licensing.kid, "typ": "JWT"}), claims)
    denial = _refused(handlers, aws, poe)
    assert denial["poe_sha256"] == hashlib.sha256(poe.encode()).hexdigest()


def test_high_s_twin_of_a_valid_poe_is_accepted_and_audited_by_the_originals_identity(
    aws: Any, handlers: Any, licensing: LocalLicensing
) -> None:
    """RFC 7518 §3.4 does not ask for a low S: the twin is the same PoE, signed as validly."""
    poe = low_s_poe(licensing)
    twin = high_s(poe)
    assert _s(twin) > P256_ORDER // 2
    _signed(handlers, twin)
    [record] = aws.audit_records()
    assert record["decision"] == "allow" and record["poe_sha256"] == poe_identity(poe)


@pytest.mark.parametrize("kind", TWINS)
def test_revoking_a_poe_refuses_its_twins(
    aws: Any, handlers: Any, licensing: LocalLicensing, introspection: Introspection, kind: str
) -> None:
    """GIVEN Licensing revoked a PoE (by its identity) before it was ever used; WHEN its twin is
    presented; THEN it is the revoked PoE: 403, audited under the original's identity."""
    poe = low_s_poe(licensing)
    introspection.revoke(poe)
    twin = twin_of(kind, poe, licensing)
    denial = _refused(handlers, aws, twin)
    assert denial["poe_sha256"] == poe_identity(poe)
    assert introspection.calls == ["/license/introspect"]


@pytest.mark.parametrize("kind", TWINS)
def test_twin_of_a_confirmed_poe_is_answered_from_the_cache_of_its_identity(
    aws: Any, handlers: Any, licensing: LocalLicensing, introspection: Introspection, kind: str
) -> None:
    """The introspection cache key is ``poe#<identity>``: a twin asks Licensing nothing new."""
    poe = low_s_poe(licensing)
    _signed(handlers, poe)
    licensing.introspection_down = True  # were the twin not a cache hit, it would be a 503
    _signed(handlers, twin_of(kind, poe, licensing))
    assert introspection.calls == ["/license/introspect"]
    assert {r["poe_sha256"] for r in aws.audit_records()} == {poe_identity(poe)}


# --- an Authority JWKS fetched by URL -----------------------------------------------------------


JWKS_PATH = "/.well-known/jwks.json"


def _unusable_keys(authority: LocalAuthority) -> list[str]:
    """The texts of keys the Signer cannot use: oct, P-521, RSA-1024, and a P-256 key naming x twice."""
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    rsa1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    other = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    real = authority.jwks["keys"][0]
    return [
        text({"kty": "oct", "k": b64url(b"an HMAC secret"), "kid": "hmac", "alg": "HS256"}),
        text({**ECAlgorithm.to_jwk(p521, as_dict=True), "kid": "p521", "alg": "ES512"}),
        text({**RSAAlgorithm.to_jwk(rsa1024, as_dict=True), "kid": "rsa1024", "alg": "PS256"}),
        repeating({**other, "kid": "repeated"}, "x", real["x"]),
    ]


@pytest.fixture
def fetched_authority_jwks(
    aws: Any, authority: LocalAuthority, scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> ScriptedServer:
    """GIVEN the Authority JWKS configured by URL, serving the real key after four unusable ones."""
    _serve_authority_jwks(
        scripted_server, monkeypatch, [*_unusable_keys(authority), text(authority.jwks["keys"][0])]
    )
    return scripted_server


def _serve_authority_jwks(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, keys: list[str]) -> None:
    """The JWKS of these key texts at ``JWKS_PATH``, configured as the Authority's by URL only."""
    server.answer(JWKS_PATH, 200, '{"keys":[' + ",".join(keys) + "]}")
    monkeypatch.setenv("SIGNER_AUTHORITY_JWKS", "")
    monkeypatch.setenv("SIGNER_AUTHORITY_JWKS_URL", server.base_url + JWKS_PATH)
    wiring.reset()


def _fetched(server: ScriptedServer) -> list[str]:
    return [path for method, path, _ in server.requests if (method, path) == ("GET", JWKS_PATH)]


def test_unusable_keys_in_a_fetched_authority_jwks_leave_the_authorizer_working(
    handlers: Any, authority: LocalAuthority, client_cert: Issued, fetched_authority_jwks: ScriptedServer
) -> None:
    effect, context = _decide(handlers, authorizer_event(token_for(authority, client_cert), client_cert))
    assert effect == "Allow", context
    assert _fetched(fetched_authority_jwks) == [JWKS_PATH]


def test_unusable_keys_in_a_fetched_authority_jwks_leave_signing_working(
    handlers: Any, licensing: LocalLicensing, fetched_authority_jwks: ScriptedServer
) -> None:
    """The sign handler confirms the caller's token against the same fetched set (spec §6)."""
    _signed(handlers, poe_for(licensing))
    assert _fetched(fetched_authority_jwks) == [JWKS_PATH]


def test_fetched_authority_jwks_with_two_keys_of_one_kid_refuses_every_token(
    aws: Any,
    handlers: Any,
    authority: LocalAuthority,
    client_cert: Issued,
    scripted_server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Which of two keys a token means would be a guess: the document is refused whole."""
    impostor = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    keys = [text(authority.jwks["keys"][0]), text({**impostor, "kid": authority.kid})]
    _serve_authority_jwks(scripted_server, monkeypatch, keys)
    _denied(handlers, authorizer_event(token_for(authority, client_cert), client_cert), "invalid_token")
    assert _fetched(scripted_server) == [JWKS_PATH]
