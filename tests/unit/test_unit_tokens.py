"""Authority operational tokens (OpToks): the verification matrix of spec §3.1 and §8."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from stellaops_signer.domain.errors import InvalidToken
from stellaops_signer.domain.jose import sha256_b64url
from stellaops_signer.domain.tokens import KeySet, OpToken, jwk_thumbprint, verify_op_token

NOW = 1_700_000_000
ISSUER = "https://authority.stellaops.test"
MAX_LIFETIME = 600
X5T = "A" * 43

P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
ED25519 = ed25519.Ed25519PrivateKey.generate()
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)

#: algorithm → (private key, kid of its public JWK in the key set)
SIGNERS: dict[str, tuple[Any, str]] = {
    "ES256": (P256, "es256"),
    "ES384": (P384, "es384"),
    "EdDSA": (ED25519, "eddsa"),
    "PS256": (RSA, "ps256"),
}


def public_jwk(private_key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, **extra}


KEYS = KeySet.from_jwks({"keys": [public_jwk(key, kid) for key, kid in SIGNERS.values()]})


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid OpTok claims at NOW; an override of None removes the claim."""
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "signer",
        "sub": "scanner-1",
        "client_id": "scanner-client",
        "tid": "tenant-a",
        "inst": "install-1",
        "scope": "signer.sign",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 290,
        "jti": "token-1",
        "cnf": {"x5t#S256": X5T},
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def token(
    alg: str = "ES256", *, kid: str | None = "", headers: dict[str, Any] | None = None, **overrides: Any
) -> str:
    """A token signed by the key of ``alg``; ``kid=""`` names that key, ``kid=None`` names none."""
    private_key, default_kid = SIGNERS[alg]
    header = dict(headers or {})
    if kid is not None:
        header["kid"] = kid or default_kid
    return jwt.encode(claims(**overrides), private_key, algorithm=alg, headers=header)


def verify(raw: str, keys: KeySet = KEYS) -> OpToken:
    return verify_op_token(raw, keys, issuer=ISSUER, now=NOW, max_lifetime=MAX_LIFETIME)


def assert_refused(raw: str, keys: KeySet = KEYS, match: str | None = None) -> None:
    """Every refusal is a 401 invalid_token (spec §3.6)."""
    with pytest.raises(InvalidToken, match=match) as caught:
        verify(raw, keys)
    assert type(caught.value) is InvalidToken
    assert (caught.value.code, caught.value.status) == ("invalid_token", 401)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned_input(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64url_json(header)}.{b64url_json(body)}"


# --- algorithms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", list(SIGNERS))
def test_token_signed_with_an_allowed_algorithm_is_accepted(alg: str) -> None:
    op_token = verify(token(alg))
    assert op_token == OpToken(
        subject="scanner-1",
        client_id="scanner-client",
        tenant="tenant-a",
        installation="install-1",
        scopes=frozenset({"signer.sign"}),
        binding="x5t#S256",
        sender_key=X5T,
        issued_at=NOW - 10,
        expires_at=NOW + 290,
        token_id="token-1",
    )


def test_token_with_alg_none_is_refused() -> None:
    assert_refused(jwt.encode(claims(), None, algorithm="none", headers={"kid": "es256"}))


@pytest.mark.parametrize("secret_form", ["pem", "jwk"])
def test_hs256_token_using_the_public_key_as_secret_is_refused(secret_form: str) -> None:
    if secret_form == "pem":
        secret = P256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = json.dumps(public_jwk(P256, "es256")).encode()
    signing_input = unsigned_input({"alg": "HS256", "typ": "JWT", "kid": "es256"}, claims())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert_refused(f"{signing_input}.{b64url(signature)}")


def test_rs256_is_refused_as_outside_the_allow_list() -> None:
    assert_refused(jwt.encode(claims(), RSA, algorithm="RS256", headers={"kid": "ps256"}))


def test_es384_header_with_a_p256_key_is_refused() -> None:
    # GIVEN a token whose signature is valid for the P-256 key under ES384's hash (SHA-384)
    signing_input = unsigned_input({"alg": "ES384", "typ": "JWT", "kid": "es256"}, claims())
    r, s = decode_dss_signature(P256.sign(signing_input.encode(), ec.ECDSA(hashes.SHA384())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert ECAlgorithm(ECAlgorithm.SHA384).verify(signing_input.encode(), P256.public_key(), signature)
    # THEN the curve/algorithm mismatch alone refuses it
    assert_refused(f"{signing_input}.{b64url(signature)}")


@pytest.mark.parametrize(
    ("alg", "kid"),
    [("PS256", "es256"), ("ES256", "eddsa"), ("EdDSA", "ps256"), ("ES256", "es384")],
    ids=["ps256_with_ec_key", "es256_with_okp_key", "eddsa_with_rsa_key", "es256_with_p384_key"],
)
def test_header_alg_not_matching_the_key_type_is_refused(alg: str, kid: str) -> None:
    assert_refused(token(alg, kid=kid), match="does not match the key")


def test_jwk_alg_member_disagreeing_with_the_header_is_refused() -> None:
    # GIVEN the same RSA key published once without and once with alg RS256
    raw = token("PS256", kid="rsa")
    assert verify(raw, KeySet.from_jwks({"keys": [public_jwk(RSA, "rsa")]}))
    # THEN a PS256 token is refused under the key that says RS256
    assert_refused(raw, KeySet.from_jwks({"keys": [public_jwk(RSA, "rsa", alg="RS256")]}))


def test_crit_header_is_refused() -> None:
    assert_refused(token(headers={"crit": ["exp"], "exp": NOW + 60}))


# --- key selection ------------------------------------------------------------------------------


def test_unknown_kid_is_refused() -> None:
    assert_refused(token(kid="unknown"))


def test_kid_that_is_not_a_string_is_refused() -> None:
    signing_input = unsigned_input({"alg": "ES256", "typ": "JWT", "kid": 7}, claims())
    r, s = decode_dss_signature(P256.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    assert_refused(f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")


def test_token_without_kid_is_refused_when_the_key_set_has_several_keys() -> None:
    assert_refused(token(kid=None))


def test_token_without_kid_is_accepted_when_the_key_set_has_one_key() -> None:
    single = KeySet.from_jwks({"keys": [public_jwk(P256, "es256")]})
    assert verify(token(kid=None), single).subject == "scanner-1"


@pytest.mark.parametrize(
    "jwk",
    [
        ECAlgorithm.to_jwk(P256, as_dict=True),
        OKPAlgorithm.to_jwk(ED25519, as_dict=True),
        RSAAlgorithm.to_jwk(RSA, as_dict=True),
    ],
    ids=["ec", "okp", "rsa"],
)
def test_jwks_holding_a_private_key_is_refused(jwk: dict[str, Any]) -> None:
    assert "d" in jwk
    with pytest.raises(ValueError, match="public keys only"):
        KeySet.from_jwks({"keys": [public_jwk(P256, "es256"), {**jwk, "kid": "private"}]})


# --- integrity ----------------------------------------------------------------------------------


def test_token_with_a_tampered_payload_is_refused() -> None:
    header, _, signature = token().split(".")
    assert_refused(f"{header}.{b64url_json(claims(tid='tenant-b'))}.{signature}")


def test_token_with_a_tampered_signature_is_refused() -> None:
    header, body, signature = token().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    assert_refused(f"{header}.{body}.{b64url(bytes(raw))}")


@pytest.mark.parametrize("raw", ["", "not-a-jwt", "a.b", "a.b.c", "...."], ids=repr)
def test_malformed_token_is_refused(raw: str) -> None:
    assert_refused(raw)


# --- time claims (±30 s skew) -------------------------------------------------------------------


def test_token_expired_beyond_the_skew_is_refused() -> None:
    assert_refused(token(iat=NOW - 300, nbf=None, exp=NOW - 31))


def test_token_expired_within_the_skew_is_accepted() -> None:
    assert verify(token(iat=NOW - 300, nbf=None, exp=NOW - 29)).expires_at == NOW - 29


def test_token_issued_in_the_future_beyond_the_skew_is_refused() -> None:
    assert_refused(token(iat=NOW + 31, nbf=None, exp=NOW + 331))


def test_token_issued_in_the_future_within_the_skew_is_accepted() -> None:
    assert verify(token(iat=NOW + 29, nbf=None, exp=NOW + 329)).issued_at == NOW + 29


def test_token_not_yet_valid_beyond_the_skew_is_refused() -> None:
    assert_refused(token(nbf=NOW + 31))


def test_token_not_yet_valid_within_the_skew_is_accepted() -> None:
    assert verify(token(nbf=NOW + 29))


@pytest.mark.parametrize("missing", ["exp", "iat"])
def test_token_without_exp_or_iat_is_refused(missing: str) -> None:
    assert_refused(token(**{missing: None}))


@pytest.mark.parametrize("value", ["1700000300", True, [NOW + 300]], ids=["string", "bool", "array"])
def test_time_claim_that_is_not_a_number_is_refused(value: Any) -> None:
    assert_refused(token(exp=value))


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_time_claim_that_is_not_a_finite_number_is_refused(claim: str) -> None:
    assert_refused(token(**{claim: float("nan")}))  # pyjwt writes the NaN literal


def test_token_living_longer_than_the_maximum_lifetime_is_refused() -> None:
    assert_refused(token(iat=NOW - 10, exp=NOW - 10 + MAX_LIFETIME + 1))


def test_token_living_exactly_the_maximum_lifetime_is_accepted() -> None:
    assert verify(token(iat=NOW - 10, exp=NOW - 10 + MAX_LIFETIME))


# --- issuer and audience ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss", ["https://evil.example", ISSUER + "/", None], ids=["other", "trailing_slash", "missing"]
)
def test_token_from_another_issuer_is_refused(iss: str | None) -> None:
    assert_refused(token(iss=iss))


@pytest.mark.parametrize(
    "aud",
    ["other", ["signer", "other"], ["other"], [], "Signer", None],
    ids=["other", "signer_and_other", "other_list", "empty_list", "case", "missing"],
)
def test_audience_other_than_exactly_signer_is_refused(aud: Any) -> None:
    assert_refused(token(aud=aud))


def test_audience_list_holding_only_signer_is_accepted() -> None:
    assert verify(token(aud=["signer"])).tenant == "tenant-a"


# --- required claims ----------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["tid", "inst", "sub"])
@pytest.mark.parametrize("value", [None, "", 42], ids=["missing", "empty", "number"])
def test_token_without_tenant_installation_or_subject_is_refused(claim: str, value: Any) -> None:
    assert_refused(token(**{claim: value}))


@pytest.mark.parametrize(
    "scope", [["signer.sign"], 1, {"signer.sign": True}], ids=["list", "number", "object"]
)
def test_scope_that_is_not_a_string_is_refused(scope: Any) -> None:
    assert_refused(token(scope=scope))


def test_scope_is_read_into_a_set() -> None:
    scopes = verify(token(scope="signer.sign  signer.verify signer.sign")).scopes
    assert scopes == frozenset({"signer.sign", "signer.verify"})
    assert isinstance(scopes, frozenset)


# --- confirmation (sender constraint) -----------------------------------------------------------


def test_token_without_cnf_is_refused() -> None:
    assert_refused(token(cnf=None))


@pytest.mark.parametrize("cnf", [{}, "x", {"jwk": {"kty": "EC"}}], ids=["empty", "string", "jwk_only"])
def test_cnf_without_jkt_or_x5t_is_refused(cnf: Any) -> None:
    assert_refused(token(cnf=cnf))


def test_cnf_with_both_jkt_and_x5t_is_refused() -> None:
    assert_refused(token(cnf={"jkt": "B" * 43, "x5t#S256": X5T}))


@pytest.mark.parametrize("jkt", ["B" * 42, "B" * 44, 43], ids=["42_chars", "44_chars", "number"])
def test_cnf_jkt_that_is_not_a_sha256_thumbprint_is_refused(jkt: Any) -> None:
    assert_refused(token(cnf={"jkt": jkt}))


def test_jkt_bound_token_is_read_as_a_dpop_binding() -> None:
    op_token = verify(token(cnf={"jkt": "B" * 43}))
    assert (op_token.binding, op_token.sender_key) == ("jkt", "B" * 43)


# --- known answers (KNOWN-ANSWERS.md) -----------------------------------------------------------

RFC7638_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
    "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJ"
    "ZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIq"
    "bw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC9449_EC = {
    "kty": "EC",
    "crv": "P-256",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
}


def test_jwk_thumbprint_matches_rfc7638_rsa_example() -> None:
    assert jwk_thumbprint(RFC7638_RSA) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_jwk_thumbprint_matches_rfc9449_ec_example() -> None:
    assert jwk_thumbprint(RFC9449_EC) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def test_jwk_thumbprint_ignores_optional_members_and_their_order() -> None:
    shuffled = {
        "y": RFC9449_EC["y"],
        "use": "sig",
        "x": RFC9449_EC["x"],
        "kid": "k",
        "crv": "P-256",
        "kty": "EC",
    }
    assert jwk_thumbprint(shuffled) == jwk_thumbprint(RFC9449_EC)


@pytest.mark.parametrize(
    "jwk",
    [{"kty": "EC", "crv": "P-256", "x": RFC9449_EC["x"]}, {"kty": "oct", "k": "c2VjcmV0"}, {}],
    ids=["ec_without_y", "symmetric", "empty"],
)
def test_jwk_thumbprint_refuses_a_jwk_without_its_required_members(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        jwk_thumbprint(jwk)


def test_ath_is_base64url_sha256_of_the_access_token() -> None:
    assert sha256_b64url(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == (
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    )


# --- the verified-signature cache ------------------------------------------------------------------


def test_a_cached_signature_still_has_its_claims_checked_on_every_use() -> None:
    from stellaops_signer.domain.tokens import CompactJws, SignatureCache

    cache, keys, text = SignatureCache(), KeySet.from_jwks({"keys": [public_jwk(P256, "es256")]}), token()
    jws = CompactJws.parse(text)
    verified = cache.verify(jws, text, keys, NOW)
    later = NOW + 3600  # long after the token expired; the signature result is still cached
    assert cache.verify(jws, text, keys, NOW + 10) is not None
    with pytest.raises(InvalidToken, match="expired"):
        verify_op_token(jws, keys, issuer=ISSUER, now=later, max_lifetime=600, verified=verified)


def test_a_cached_signature_counts_only_for_the_key_set_that_verified_it() -> None:
    from stellaops_signer.domain.tokens import CompactJws, SignatureCache

    cache, text = SignatureCache(), token()
    jws = CompactJws.parse(text)
    cache.verify(jws, text, KeySet.from_jwks({"keys": [public_jwk(P256, "es256")]}), NOW)
    stranger = KeySet.from_jwks({"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()), "es256")]})
    with pytest.raises(InvalidToken, match="signature does not verify"):
        cache.verify(jws, text, stranger, NOW)


def test_a_cached_signature_expires_after_its_ttl() -> None:
    from stellaops_signer.domain.tokens import CompactJws, SignatureCache

    keys, text = KeySet.from_jwks({"keys": [public_jwk(P256, "es256")]}), token()
    cache, jws = SignatureCache(ttl=60), CompactJws.parse(text)
    cache.verify(jws, text, keys, NOW)
    calls: list[int] = []
    import stellaops_signer.domain.tokens as tokens_module

    real = tokens_module.verify_jws
    tokens_module.verify_jws = lambda *a, **k: calls.append(1) or real(*a, **k)  # type: ignore[assignment]
    try:
        cache.verify(jws, text, keys, NOW + 30)
        cache.verify(jws, text, keys, NOW + 61)
    finally:
        tokens_module.verify_jws = real  # type: ignore[assignment]
    assert calls == [1]


def test_a_token_read_once_still_has_its_time_rules_applied_on_every_use() -> None:
    """``TokenVerifier`` reads a verified token's claims once; expiry, ``nbf`` and ``iat`` are
    judged again at each use, and a new key set (a refreshed JWKS) reads the token again."""
    from stellaops_signer.usecases.authenticate import TokenVerifier

    class Keys:
        current = KEYS

        def key_set(self, kid: str | None) -> KeySet:
            return self.current

    class Clock:
        now_value = float(NOW)

        def now(self) -> float:
            return self.now_value

    keys, clock = Keys(), Clock()
    verifier = TokenVerifier(authority_keys=keys, issuer=ISSUER, max_lifetime=MAX_LIFETIME, clock=clock)
    text = token(nbf=NOW + 40, iat=NOW - 10, exp=NOW + 80)  # expires while its signature stays cached
    with pytest.raises(InvalidToken, match="not valid yet"):
        verifier.verify(text)
    clock.now_value = NOW + 20
    first = verifier.verify(text)
    assert verifier.verify(text) is first  # read once
    clock.now_value = NOW + 80 + 31
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(text)
    clock.now_value = NOW + 20
    keys.current = KeySet.from_jwks({"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()), "es256")]})
    with pytest.raises(InvalidToken, match="signature does not verify"):
        verifier.verify(text)
