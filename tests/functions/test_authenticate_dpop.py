"""DPoP-bound requests (RFC 9449) through the authorizer handler: every check of §4.3, the
server nonce (§8) and the replay cache, each refusal with its code and DPoP challenge."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from local.dpop import DpopKey
from tests.conftest import PUBLIC_BASE_URL
from tests.functions.conftest import authorizer_event, token_for

PATH = "/api/v1/signer/sign/dsse"
URL = PUBLIC_BASE_URL + PATH


def _decide(handlers: Any, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    answer = handlers["authenticate"](event)
    return answer["policyDocument"]["Statement"][0]["Effect"], answer.get("context") or {}


def _event(
    token: str, proofs: list[str] | str | None, cert: Any = None, scheme: str = "DPoP"
) -> dict[str, Any]:
    event = authorizer_event(token, cert, scheme=scheme)
    values = [proofs] if isinstance(proofs, str) else (proofs or [])
    if values:
        event["headers"]["DPoP"] = values[-1]
        event["multiValueHeaders"]["DPoP"] = values
    return event


def _refused(handlers: Any, event: dict[str, Any], code: str) -> dict[str, Any]:
    effect, context = _decide(handlers, event)
    assert effect == "Deny", context
    assert context["errorCode"] == code, context
    challenge = context["wwwAuthenticate"]
    assert (
        challenge.startswith("DPoP ") and f'error="{code}"' in challenge and 'algs="ES256 EdDSA"' in challenge
    )
    assert context["dpopNonce"]  # every DPoP refusal hands out a fresh nonce
    return context


class Caller:
    """A DPoP client of the authorizer: its key, its token, and the last nonce it was given."""

    def __init__(self, handlers: Any, authority: Any, key: DpopKey | None = None, **claims: Any) -> None:
        self.handlers = handlers
        self.key = key or DpopKey()
        claims.setdefault("cnf", {"jkt": self.key.thumbprint})
        self.token = token_for(authority, None, **claims)
        self.nonce: str | None = None

    def proof(self, **overrides: Any) -> str:
        options: dict[str, Any] = {"access_token": self.token, "nonce": self.nonce}
        options.update(overrides)
        method, url = options.pop("method", "POST"), options.pop("url", URL)
        return self.key.proof(method, url, **options)

    def obtain_nonce(self) -> None:
        context = _refused(
            self.handlers,
            _event(self.token, self.key.proof("POST", URL, access_token=self.token)),
            "use_dpop_nonce",
        )
        self.nonce = context["dpopNonce"]


@pytest.fixture
def caller(aws: Any, handlers: Any, authority: Any) -> Caller:
    caller = Caller(handlers, authority)
    caller.obtain_nonce()
    return caller


def test_valid_proof_with_a_server_nonce_is_allowed(caller: Caller) -> None:
    effect, context = _decide(caller.handlers, _event(caller.token, caller.proof()))
    assert effect == "Allow"
    assert context["binding"] == "dpop" and context["senderKey"] == caller.key.thumbprint
    assert context["dpopNonce"]  # a fresh nonce rides on every answer (RFC 9449 §8.2)


def test_proof_without_a_nonce_gets_use_dpop_nonce_and_a_fresh_one(
    aws: Any, handlers: Any, authority: Any
) -> None:
    caller = Caller(handlers, authority)
    context = _refused(handlers, _event(caller.token, caller.proof()), "use_dpop_nonce")
    caller.nonce = context["dpopNonce"]
    assert _decide(handlers, _event(caller.token, caller.proof()))[0] == "Allow"


def test_forged_and_stale_nonces_are_refused(caller: Caller, aws: Any) -> None:
    from stellaops_signer.domain.dpop import NonceKeeper

    _refused(caller.handlers, _event(caller.token, caller.proof(nonce="A" * 32)), "use_dpop_nonce")
    _refused(caller.handlers, _event(caller.token, caller.proof(nonce="not base64url!")), "use_dpop_nonce")
    secret = aws.client("secretsmanager").get_secret_value(
        SecretId=aws.environment["SIGNER_NONCE_SECRET_ARN"]
    )
    ours = NonceKeeper(secret["SecretString"].encode(), ttl_seconds=300)
    _refused(
        caller.handlers,
        _event(caller.token, caller.proof(nonce=ours.issue(time.time() - 400))),
        "use_dpop_nonce",
    )
    other_key = NonceKeeper(b"another installation's nonce key", ttl_seconds=300)
    _refused(
        caller.handlers,
        _event(caller.token, caller.proof(nonce=other_key.issue(time.time()))),
        "use_dpop_nonce",
    )
    assert _decide(caller.handlers, _event(caller.token, caller.proof(nonce=ours.issue(time.time() - 200))))[
        0
    ] == ("Allow")


def test_nonce_is_not_required_when_require_dpop_nonce_is_false(
    aws: Any, handlers: Any, authority: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stellaops_signer import wiring

    monkeypatch.setenv("SIGNER_REQUIRE_DPOP_NONCE", "false")
    wiring.reset()
    caller = Caller(handlers, authority)
    assert _decide(handlers, _event(caller.token, caller.proof()))[0] == "Allow"


def test_replayed_proof_is_refused(caller: Caller) -> None:
    proof = caller.proof()
    assert _decide(caller.handlers, _event(caller.token, proof))[0] == "Allow"
    context = _refused(caller.handlers, _event(caller.token, proof), "invalid_dpop_proof")
    assert "already used" in context["errorDetail"]


def test_same_jti_under_another_key_is_not_a_replay(caller: Caller, authority: Any) -> None:
    other = Caller(caller.handlers, authority)
    other.nonce = caller.nonce
    assert _decide(caller.handlers, _event(caller.token, caller.proof(jti="shared")))[0] == "Allow"
    assert _decide(caller.handlers, _event(other.token, other.proof(jti="shared")))[0] == "Allow"


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("typ jwt", {"header": {"typ": "JWT"}}),
        ("typ missing", {"header": {"typ": None}}),
        ("htm GET for a POST", {"method": "GET"}),
        ("htu of another path", {"url": PUBLIC_BASE_URL + "/api/v1/signer/keys"}),
        ("htu of another host", {"url": "https://evil.example.com" + PATH}),
        ("htu over http", {"url": "http://signer.example.com" + PATH}),
        ("iat too old", {"iat_offset": -31}),
        ("iat in the future", {"iat_offset": 31}),
        ("ath of another token", {"access_token": "another-token"}),
        ("ath missing", {"access_token": None}),
        ("jti missing", {"claims": {"jti": None}}),
        ("htu missing", {"claims": {"htu": None}}),
        ("iat as a string", {"claims": {"iat": str(int(time.time()))}}),
    ],
)
def test_proof_breaking_a_check_is_refused(caller: Caller, case: str, overrides: dict[str, Any]) -> None:
    overrides = dict(overrides)
    if "iat_offset" in overrides:
        overrides["iat"] = int(time.time()) + overrides.pop("iat_offset")
    header = {k: v for k, v in (overrides.pop("header", None) or {}).items()}
    claims = overrides.pop("claims", None)
    proof = _custom(caller, header=header, claims=claims) if header or claims else caller.proof(**overrides)
    _refused(caller.handlers, _event(caller.token, proof), "invalid_dpop_proof")


def _custom(
    caller: Caller,
    *,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    key: Any = None,
    algorithm: str = "ES256",
) -> str:
    """A proof built member by member (None removes one), signed by ``key`` (default: the caller's)."""
    import base64
    import hashlib
    import uuid

    body: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "htm": "POST",
        "htu": URL,
        "iat": int(time.time()),
        "nonce": caller.nonce,
        "ath": base64.urlsafe_b64encode(hashlib.sha256(caller.token.encode()).digest()).rstrip(b"=").decode(),
    }
    head: dict[str, Any] = {"typ": "dpop+jwt", "jwk": caller.key.public_jwk}
    for target, changes in ((body, claims), (head, header)):
        for name, value in (changes or {}).items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    signing_key = caller.key.private_key if key is None and algorithm != "none" else key
    token = jwt.encode(body, signing_key, algorithm=algorithm, headers=head)
    if "typ" not in head:  # PyJWT adds typ "JWT" by default; remove it for the missing case
        parts = token.split(".")
        decoded = json.loads(base64.urlsafe_b64decode(parts[0] + "==").decode())
        decoded.pop("typ", None)
        parts[0] = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
        token = ".".join(parts)
    return token


def test_query_and_fragment_are_ignored_and_the_uri_is_normalised(caller: Caller) -> None:
    for url in (
        URL + "?a=1#frag",
        "HTTPS://Signer.Example.COM:443/api/v1/./signer/sign/dsse",
        "https://signer.example.com/api/v1/signer/%73ign/dsse",
    ):
        assert _decide(caller.handlers, _event(caller.token, caller.proof(url=url)))[0] == "Allow", url


def test_proof_signed_by_another_key_than_its_jwk_is_refused(caller: Caller) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    _refused(caller.handlers, _event(caller.token, _custom(caller, key=stranger)), "invalid_dpop_proof")


def test_proof_by_a_key_other_than_the_tokens_is_refused(caller: Caller) -> None:
    other = DpopKey()
    proof = other.proof("POST", URL, access_token=caller.token, nonce=caller.nonce)
    context = _refused(caller.handlers, _event(caller.token, proof), "invalid_dpop_proof")
    assert "bound to" in context["errorDetail"]


def test_proof_with_a_private_key_in_its_jwk_is_refused(caller: Caller) -> None:
    from jwt.algorithms import ECAlgorithm

    private_jwk = json.loads(ECAlgorithm.to_jwk(caller.key.private_key))
    _refused(
        caller.handlers,
        _event(caller.token, _custom(caller, header={"jwk": private_jwk})),
        "invalid_dpop_proof",
    )


def test_proof_without_a_jwk_is_refused(caller: Caller) -> None:
    _refused(
        caller.handlers, _event(caller.token, _custom(caller, header={"jwk": None})), "invalid_dpop_proof"
    )


@pytest.mark.parametrize("algorithm", ["ES384", "HS256", "none", "RS256", "PS256"])
def test_proof_algorithms_other_than_es256_and_eddsa_are_refused(caller: Caller, algorithm: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key: Any = {
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "HS256": "a-shared-secret-of-enough-length-1234",
        "none": None,
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "PS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }[algorithm]
    proof = _custom(caller, key=key, algorithm=algorithm)
    _refused(caller.handlers, _event(caller.token, proof), "invalid_dpop_proof")


def test_eddsa_proofs_are_accepted(aws: Any, handlers: Any, authority: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from jwt.algorithms import OKPAlgorithm

    from stellaops_signer.domain.tokens import jwk_thumbprint

    private = Ed25519PrivateKey.generate()
    public_jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    key = DpopKey()
    key.private_key, key.public_jwk, key.thumbprint = private, public_jwk, jwk_thumbprint(public_jwk)  # type: ignore[assignment]
    caller = Caller(handlers, authority, key=key)
    proof = _custom(caller, key=private, algorithm="EdDSA")
    context = _refused(handlers, _event(caller.token, proof), "use_dpop_nonce")
    caller.nonce = context["dpopNonce"]
    assert (
        _decide(handlers, _event(caller.token, _custom(caller, key=private, algorithm="EdDSA")))[0] == "Allow"
    )


def test_missing_or_duplicated_proof_headers_are_refused(caller: Caller) -> None:
    _refused(caller.handlers, _event(caller.token, None), "invalid_dpop_proof")
    _refused(caller.handlers, _event(caller.token, [caller.proof(), caller.proof()]), "invalid_dpop_proof")
    _refused(caller.handlers, _event(caller.token, "not.a.jwt"), "invalid_dpop_proof")


def test_certificate_bound_token_with_the_dpop_scheme_is_refused(
    caller: Caller, authority: Any, client_cert: Any
) -> None:
    token = token_for(authority, client_cert)
    context = _refused(
        caller.handlers, _event(token, caller.proof(access_token=token), client_cert), "invalid_token"
    )
    assert "Bearer" in context["errorDetail"]


def test_dpop_bound_token_with_the_bearer_scheme_is_refused_as_a_downgrade(
    caller: Caller, client_cert: Any
) -> None:
    effect, context = _decide(
        caller.handlers, _event(caller.token, caller.proof(), client_cert, scheme="Bearer")
    )
    assert effect == "Deny" and context["errorCode"] == "invalid_token"
    assert context["wwwAuthenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    "claims",
    [{"aud": ["signer", "attestor"]}, {"exp": int(time.time()) - 60}, {"iss": "https://evil.example"}],
    ids=["multi-audience", "expired", "issuer"],
)
def test_dpop_bound_tokens_breaking_a_claim_rule_are_refused_with_a_dpop_challenge(
    aws: Any, handlers: Any, authority: Any, claims: dict[str, Any]
) -> None:
    caller = Caller(handlers, authority, **claims)
    _refused(handlers, _event(caller.token, caller.proof()), "invalid_token")


def test_tokens_with_both_or_neither_confirmation_are_refused(
    aws: Any, handlers: Any, authority: Any
) -> None:
    key = DpopKey()
    for cnf in ({"jkt": key.thumbprint, "x5t#S256": "A" * 43}, {}):
        caller = Caller(handlers, authority, key=key, cnf=cnf or None)
        _refused(handlers, _event(caller.token, caller.proof()), "invalid_token")


def test_proof_and_token_never_reach_the_audit_trail(aws: Any, caller: Caller) -> None:
    proof = caller.proof(url=PUBLIC_BASE_URL + "/elsewhere")
    _refused(caller.handlers, _event(caller.token, proof), "invalid_dpop_proof")
    stored = json.dumps(aws.audit_records())
    assert proof not in stored and caller.token not in stored and proof.split(".")[2] not in stored


def test_event_with_lowercase_header_names_is_read_the_same(caller: Caller) -> None:
    event = _event(caller.token, caller.proof())
    event["headers"] = {k.lower(): v for k, v in event["headers"].items()}
    event["multiValueHeaders"] = {k.lower(): v for k, v in event["multiValueHeaders"].items()}
    assert _decide(caller.handlers, copy.deepcopy(event))[0] == "Allow"
