"""JSON as JOSE must read it (RFC 7515 §4, §5.2; RFC 7519 §4, §7.2), the JWKS read leniently per key
(RFC 7517 §5) and the identity of a PoE (spec §5.1).

A header or claims set that repeats a member name, or spells a number no double can hold, could be
read two ways by two parsers (the issuer's and ours): it is refused, whatever the caller's error type.
Tokens that need such members are assembled by hand and signed over their exact bytes, so each refusal
here is the parser's, never the signature's (a control test proves the assembly itself verifies).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from local.dpop import DpopKey
from local.licensing import LocalLicensing
from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.dpop import verify_proof
from stellaops_signer.domain.entitlement import poe_identity, poe_identity_of, verify_poe
from stellaops_signer.domain.errors import EntitlementDenied, InvalidDpopProof, InvalidToken, SignerError
from stellaops_signer.domain.jose import AmbiguousObject, b64url_decode, strict_json, tolerant_json
from stellaops_signer.domain.quota import Plan
from stellaops_signer.domain.tokens import CompactJws, KeySet, verify_jws, verify_op_token
from tests.conftest import poe_identity as independent_poe_identity
from tests.jose_assembly import b64url, es256, repeating, text

NOW = 1_800_000_000
ISSUER = "https://authority.stellaops.test"
KID = "authority-1"
AUTHORITY = ec.generate_private_key(ec.SECP256R1())
KEYS = KeySet.from_jwks({"keys": [{**ECAlgorithm.to_jwk(AUTHORITY.public_key(), as_dict=True), "kid": KID}]})
#: The order of the P-256 group (SEC 2 §2.4.2): (r, n − s) is the other valid signature of a message.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

URL = "https://signer.example.com/api/v1/signer/sign/dsse"
ACCESS_TOKEN = "an-access-token"
ATH = base64.urlsafe_b64encode(hashlib.sha256(ACCESS_TOKEN.encode()).digest()).rstrip(b"=").decode()
DPOP_KEY = DpopKey()

CALLER = Principal(
    subject="scanner-1",
    client_id="scanner-1",
    tenant="tenant-a",
    installation="inst-1",
    scopes=frozenset({"signer.sign"}),
    binding="mtls",
    sender_key="A" * 43,
)
PLANS = {"pro": Plan.parse("pro", {"qps": 1, "concurrency": 1, "maxArtifactBytes": 1, "dailySignatures": 1})}


# --- hand assembly ------------------------------------------------------------------------------


def header(**members: Any) -> str:
    return text({"alg": "ES256", "kid": KID, **members})


def op_claims(**overrides: Any) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": "signer",
        "sub": "scanner-1",
        "client_id": "scanner-1",
        "tid": "tenant-a",
        "inst": "inst-1",
        "scope": "signer.sign",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 290,
        "cnf": {"x5t#S256": "A" * 43},
        **overrides,
    }


def verify_op(token: str, keys: KeySet = KEYS) -> Any:
    return verify_op_token(token, keys, issuer=ISSUER, now=NOW, max_lifetime=600)


def proof_header(jwk: str | None = None, **members: Any) -> str:
    jwk_text = jwk if jwk is not None else text(DPOP_KEY.public_jwk)
    return text({"typ": "dpop+jwt", "alg": "ES256", **members})[:-1] + f',"jwk":{jwk_text}' + "}"


def proof_claims(**overrides: Any) -> dict[str, Any]:
    return {"jti": "proof-1", "htm": "POST", "htu": URL, "iat": NOW, "ath": ATH, **overrides}


def check_proof(proof: str) -> Any:
    return verify_proof(
        proof, method="POST", url=URL, access_token=ACCESS_TOKEN, expected_jkt=DPOP_KEY.thumbprint, now=NOW
    )


def refused_as(error: type[SignerError], call: Any, *args: Any, **kwargs: Any) -> SignerError:
    """THEN the refusal is exactly the caller's error type (not a ValueError, not a subclass)."""
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is error
    return caught.value


def test_hand_assembled_token_and_proof_without_repeated_members_verify() -> None:
    """The control: what the tests below refuse differs from these only by the repetition."""
    assert verify_op(es256(AUTHORITY, header(typ="JWT"), text(op_claims()))).tenant == "tenant-a"
    proof = es256(DPOP_KEY.private_key, proof_header(), text(proof_claims()))
    assert check_proof(proof).jkt == DPOP_KEY.thumbprint


# --- strict_json and tolerant_json --------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        '{"a":1,"a":1}',
        '{"a":1,"a":2}',
        '{"o":{"b":1,"b":2}}',
        '[{"c":1},{"c":1,"c":1}]',
        '{"\\u0061":1,"a":2}',
    ],
    ids=["same-value", "other-value", "nested", "in-array", "escaped-spelling"],
)
def test_strict_json_refuses_repeated_member_names_at_any_depth(document: str) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        strict_json(document)


@pytest.mark.parametrize(
    "document",
    ['{"exp":NaN}', '{"exp":Infinity}', '{"exp":-Infinity}', '{"exp":1e400}', '{"exp":-1e400}', "[1E999]"],
    ids=["NaN", "Infinity", "-Infinity", "overflow", "negative-overflow", "overflow-in-array"],
)
def test_strict_json_refuses_nan_and_infinity_however_spelled(document: str) -> None:
    """``1e400`` is no literal, but every double reads it as Infinity: the same ambiguity."""
    with pytest.raises(ValueError):
        strict_json(document)


@pytest.mark.parametrize(
    "encoded",
    [
        '{"alg":"ES256"}'.encode("utf-16-le"),
        '{"alg":"ES256"}'.encode("utf-16"),
        '{"alg":"ES256"}'.encode("utf-32"),
        b'\xef\xbb\xbf{"alg":"ES256"}',
        b'{"alg":"ES\xff256"}',
    ],
    ids=["UTF-16LE", "UTF-16-with-BOM", "UTF-32", "UTF-8-BOM", "invalid-UTF-8"],
)
def test_strict_json_reads_octets_as_utf8_only(encoded: bytes) -> None:
    """RFC 7515 §5.2 (4) and RFC 7519 §7.2 (10): the octets are a UTF-8 representation of the object."""
    with pytest.raises(ValueError):
        strict_json(encoded)


def test_strict_json_reads_unique_finite_json_unchanged() -> None:
    assert strict_json(b'{"a":{"b":[1,2.5,-0.0,1e300]},"c":"\xc3\xa9"}') == {
        "a": {"b": [1, 2.5, -0.0, 1e300]},
        "c": "é",
    }


def test_tolerant_json_marks_only_the_objects_that_repeat_a_name() -> None:
    document = tolerant_json('{"keys":[{"kid":"a","x":"1"},{"kid":"b","x":"1","x":"2"}]}')
    first, second = document["keys"]
    assert type(document) is dict and type(first) is dict
    assert isinstance(second, AmbiguousObject)


@pytest.mark.parametrize("document", ['{"keys":[{"e":NaN}]}', '{"keys":[{"e":1e400}]}'])
def test_tolerant_json_still_refuses_nan_and_infinity(document: str) -> None:
    with pytest.raises(ValueError):
        tolerant_json(document)


# --- rule 1: repeated members and non-finite numbers refuse, as the caller's error ---------------


def test_jws_header_with_alg_none_then_es256_is_refused_though_signed_correctly() -> None:
    """GIVEN a header read as ``none`` by a first-wins parser and ES256 by a last-wins one,
    signed with the Authority's key over its exact bytes; THEN no reading is chosen: it is refused."""
    token = es256(AUTHORITY, f'{{"alg":"none","alg":"ES256","kid":"{KID}"}}', text(op_claims()))
    error = refused_as(InvalidToken, verify_op, token)
    assert "unique member names" in error.detail


@pytest.mark.parametrize(
    "raw_header",
    [
        f'{{"alg":"ES256","alg":"ES256","kid":"{KID}"}}',
        f'{{"alg":"ES256","kid":"another","kid":"{KID}"}}',
        f'{{"alg":"ES256","kid":"{KID}","typ":"JWT","typ":"dpop+jwt"}}',
        f'{{"alg":"ES256","kid":"{KID}","x":{{"a":1,"a":1}}}}',
    ],
    ids=["alg-twice-same-value", "kid-twice", "typ-twice", "nested"],
)
def test_jws_header_repeating_a_member_name_is_refused(raw_header: str) -> None:
    refused_as(InvalidToken, verify_op, es256(AUTHORITY, raw_header, text(op_claims())))


@pytest.mark.parametrize(
    ("name", "other", "first"),
    [
        ("tid", "tenant-b", False),
        ("tid", "tenant-b", True),
        ("aud", "signer", False),
        ("scope", "signer.sign signer.admin", False),
        ("exp", NOW + 86400, False),
    ],
    ids=["tid-last", "tid-first", "aud-same-value", "scope", "exp"],
)
def test_claims_repeating_a_member_name_are_refused(name: str, other: Any, first: bool) -> None:
    token = es256(AUTHORITY, header(), repeating(op_claims(), name, other, first=first))
    error = refused_as(InvalidToken, verify_op, token)
    assert "unique member names" in error.detail


def test_claims_repeating_a_member_name_inside_cnf_are_refused() -> None:
    cnf = repeating({"x5t#S256": "A" * 43}, "x5t#S256", "B" * 43)
    claims = text({k: v for k, v in op_claims().items() if k != "cnf"})[:-1] + f',"cnf":{cnf}' + "}"
    refused_as(InvalidToken, verify_op, es256(AUTHORITY, header(), claims))


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_claims_holding_nan_or_infinity_are_refused(number: str) -> None:
    claims = text(op_claims(exp=0)).replace('"exp":0', f'"exp":{number}')
    refused_as(InvalidToken, verify_op, es256(AUTHORITY, header(), claims))


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400"])
def test_jws_header_holding_nan_or_infinity_is_refused(number: str) -> None:
    raw_header = header()[:-1] + f',"x-extra":{number}' + "}"
    refused_as(InvalidToken, verify_op, es256(AUTHORITY, raw_header, text(op_claims())))


@pytest.mark.parametrize("error", [EntitlementDenied, InvalidDpopProof])
def test_repeated_header_member_refuses_with_the_callers_error_type(error: type[SignerError]) -> None:
    token = es256(AUTHORITY, f'{{"alg":"none","alg":"ES256","kid":"{KID}"}}', text(op_claims()))
    refused_as(error, CompactJws.parse, token, error)
    refused_as(error, verify_jws, token, KEYS, error)


@pytest.mark.parametrize("error", [EntitlementDenied, InvalidDpopProof])
def test_repeated_claims_member_refuses_with_the_callers_error_type(error: type[SignerError]) -> None:
    token = es256(AUTHORITY, header(), repeating(op_claims(), "tid", "tenant-b"))
    refused_as(error, verify_jws, token, KEYS, error)


def test_dpop_proof_whose_jwk_repeats_a_member_is_refused() -> None:
    """GIVEN a proof signed by the caller's key whose ``jwk`` names another ``x`` first;
    THEN it is refused (a first-wins parser would verify with a key nobody holds)."""
    stranger = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    jwk = repeating(DPOP_KEY.public_jwk, "x", stranger["x"], first=True)
    proof = es256(DPOP_KEY.private_key, proof_header(jwk=jwk), text(proof_claims()))
    refused_as(InvalidDpopProof, check_proof, proof)


@pytest.mark.parametrize("name", ["kty", "crv", "y"])
def test_dpop_proof_whose_jwk_repeats_a_member_with_the_same_value_is_refused(name: str) -> None:
    jwk = repeating(DPOP_KEY.public_jwk, name, DPOP_KEY.public_jwk[name])
    proof = es256(DPOP_KEY.private_key, proof_header(jwk=jwk), text(proof_claims()))
    refused_as(InvalidDpopProof, check_proof, proof)


@pytest.mark.parametrize("member", ['"typ":"dpop+jwt"', '"alg":"ES256"'], ids=["typ", "alg"])
def test_dpop_proof_header_repeating_typ_or_alg_is_refused(member: str) -> None:
    raw_header = proof_header()[:-1] + "," + member + "}"
    refused_as(InvalidDpopProof, check_proof, es256(DPOP_KEY.private_key, raw_header, text(proof_claims())))


@pytest.mark.parametrize(
    ("name", "other", "first"),
    [("htm", "GET", True), ("htm", "GET", False), ("jti", "proof-2", False), ("ath", "A" * 43, True)],
    ids=["htm-first", "htm-last", "jti", "ath"],
)
def test_dpop_proof_claims_repeating_a_member_are_refused(name: str, other: Any, first: bool) -> None:
    proof = es256(DPOP_KEY.private_key, proof_header(), repeating(proof_claims(), name, other, first=first))
    error = refused_as(InvalidDpopProof, check_proof, proof)
    assert "unique member names" in error.detail


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400"])
def test_dpop_proof_claims_holding_nan_or_infinity_are_refused(number: str) -> None:
    claims = text(proof_claims(iat=0)).replace('"iat":0', f'"iat":{number}')
    refused_as(InvalidDpopProof, check_proof, es256(DPOP_KEY.private_key, proof_header(), claims))


# --- rule 2: the JWKS, read leniently per key and strictly per document --------------------------


def _public(private_key: Any, kid: str) -> dict[str, Any]:
    to_jwk = RSAAlgorithm.to_jwk if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm.to_jwk
    return {**to_jwk(private_key.public_key(), as_dict=True), "kid": kid}


GOOD = {**ECAlgorithm.to_jwk(AUTHORITY.public_key(), as_dict=True), "kid": KID}
P521 = ec.generate_private_key(ec.SECP521R1())
RSA1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
#: A P-256 key whose text names ``x`` twice, read by ``tolerant_json`` as the adapter reads a JWKS.
REPEATED = tolerant_json(
    repeating(_public(ec.generate_private_key(ec.SECP256R1()), "repeated"), "x", GOOD["x"])
)
#: kid → (unusable key, what its skip reason says)
UNUSABLE: dict[str, tuple[Any, str]] = {
    "oct": (
        {"kty": "oct", "k": b64url(b"a shared secret, never a JWS key"), "kid": "oct"},
        "public keys only",
    ),  # k is a secret
    "p521": (_public(P521, "p521"), "curve 'P-521'"),
    "rsa1024": (_public(RSA1024, "rsa1024"), "2048 bits"),
    "repeated": (REPEATED, "repeats a member name"),
}


def test_repeated_member_key_is_what_tolerant_json_reads() -> None:
    assert isinstance(REPEATED, AmbiguousObject)


@pytest.mark.parametrize("kid", list(UNUSABLE))
def test_unusable_jwks_key_is_skipped_with_its_reason_and_the_others_work(kid: str) -> None:
    key, reason = UNUSABLE[kid]
    keys = KeySet.from_jwks({"keys": [key, GOOD]})
    assert len(keys.skipped) == 1
    assert f"key 0 ({kid})" in keys.skipped[0] and reason in keys.skipped[0]
    assert keys.find(kid) is None and [k.kid for k in keys.keys] == [KID]
    assert verify_op(es256(AUTHORITY, header(), text(op_claims())), keys).tenant == "tenant-a"


def test_jwks_with_every_unusable_kind_beside_a_good_key_keeps_the_good_key() -> None:
    keys = KeySet.from_jwks({"keys": [*(key for key, _ in UNUSABLE.values()), GOOD]})
    assert len(keys.skipped) == len(UNUSABLE)
    for skipped, (kid, (_, reason)) in zip(keys.skipped, UNUSABLE.items(), strict=True):
        assert kid in skipped and reason in skipped
    assert verify_op(es256(AUTHORITY, header(), text(op_claims())), keys).tenant == "tenant-a"


@pytest.mark.parametrize("kid", list(UNUSABLE))
def test_jwks_whose_only_key_is_unusable_is_refused(kid: str) -> None:
    key, reason = UNUSABLE[kid]
    with pytest.raises(ValueError, match="no usable key") as caught:
        KeySet.from_jwks({"keys": [key]})
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "twin",
    [GOOD, _public(ec.generate_private_key(ec.SECP256R1()), KID), {**UNUSABLE["p521"][0], "kid": KID}],
    ids=["same-key", "another-key", "an-unusable-key"],
)
def test_jwks_with_two_keys_sharing_a_kid_is_refused_naming_the_kid(twin: dict[str, Any]) -> None:
    """Even when one of the two would be skipped: which key a token means must never be a guess."""
    with pytest.raises(ValueError, match=f"two keys with kid '{KID}'"):
        KeySet.from_jwks({"keys": [GOOD, twin]})


@pytest.mark.parametrize(
    "private_key",
    [P521, RSA1024, ec.generate_private_key(ec.SECP256R1())],
    ids=["P-521", "RSA-1024", "P-256"],
)
def test_jwks_publishing_an_asymmetric_private_key_is_refused_even_an_unusable_one(private_key: Any) -> None:
    """A published private key is a leak to report, not a key to skip."""
    to_jwk = RSAAlgorithm.to_jwk if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm.to_jwk
    leaked = {**to_jwk(private_key, as_dict=True), "kid": "leaked"}
    with pytest.raises(ValueError, match="public keys only"):
        KeySet.from_jwks({"keys": [GOOD, leaked]})


@pytest.mark.parametrize(
    "spelling",
    ['"kty":"oct"', '"kty":"EC","kty":"oct"'],
    ids=["kty-oct", "kty-EC-then-oct"],
)
def test_jwks_publishing_an_ec_private_key_is_refused_whatever_its_kty_says(spelling: str) -> None:
    """``d`` is an asymmetric private member whatever ``kty`` claims (only an ``oct`` key's ``k`` is a
    secret to skip): a first-wins reader of the second spelling sees the issuer's EC private key."""
    leaked = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    leaked_text = "{" + spelling + "," + text({k: v for k, v in leaked.items() if k != "kty"})[1:]
    document = tolerant_json('{"keys":[' + text(GOOD) + "," + leaked_text + "]}")
    with pytest.raises(ValueError, match="public keys only"):
        KeySet.from_jwks(document)


def test_jwks_document_repeating_keys_is_refused() -> None:
    document = tolerant_json('{"keys":[' + text(GOOD) + '],"keys":[' + text(GOOD) + "]}")
    with pytest.raises(ValueError, match="non-empty 'keys' list"):
        KeySet.from_jwks(document)


# --- rule 3: the identity of a PoE --------------------------------------------------------------


@pytest.fixture(scope="module")
def licensing_keys(licensing: LocalLicensing) -> KeySet:
    return KeySet.from_jwks(licensing.jwks)


def _poe(licensing: LocalLicensing, **overrides: Any) -> str:
    return licensing.mint(licensing.claims_for("tenant-a", "inst-1", now=NOW, **overrides))


def _verified(poe: str, licensing: LocalLicensing, keys: KeySet) -> str:
    entitlement = verify_poe(poe, keys, issuer=licensing.issuer, now=NOW, principal=CALLER, plans=PLANS)
    return entitlement.poe_sha256


def reencoded(poe: str, private_key: ec.EllipticCurvePrivateKey) -> str:
    """The same header and claims, members reversed and spaced out, signed again."""
    header_b64, claims_b64, _ = poe.split(".")
    decoded = [json.loads(b64url_decode(part)) for part in (header_b64, claims_b64)]
    spaced = [json.dumps(dict(reversed(list(part.items()))), indent=2) for part in decoded]
    return es256(private_key, *spaced)


def high_s(poe: str) -> str:
    """The (r, n − s) twin of an ES256 signature, re-encoded as R‖S: also valid (RFC 7518 §3.4)."""
    signing_input, _, signature = poe.rpartition(".")
    raw = b64url_decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + (P256_ORDER - s).to_bytes(32, 'big'))}"


def test_reencoded_poe_verifies_and_is_the_same_poe(
    licensing: LocalLicensing, licensing_keys: KeySet
) -> None:
    poe = _poe(licensing)
    twin = reencoded(poe, licensing.key)
    assert twin.split(".")[:2] != poe.split(".")[:2]  # other bytes for header and claims alike
    assert _verified(twin, licensing, licensing_keys) == _verified(poe, licensing, licensing_keys)
    assert poe_identity_of(twin) == poe_identity_of(poe)


def test_high_s_twin_of_a_poe_signature_verifies_and_is_the_same_poe(
    licensing: LocalLicensing, licensing_keys: KeySet
) -> None:
    poe = _poe(licensing)
    twin = high_s(poe)
    s, twin_s = (int.from_bytes(b64url_decode(t.split(".")[2])[32:], "big") for t in (poe, twin))
    assert twin != poe and s + twin_s == P256_ORDER and max(s, twin_s) > P256_ORDER // 2
    assert _verified(twin, licensing, licensing_keys) == _verified(poe, licensing, licensing_keys)
    assert poe_identity_of(twin) == poe_identity_of(poe)


def test_poe_with_other_claims_is_another_poe(licensing: LocalLicensing, licensing_keys: KeySet) -> None:
    poe = _poe(licensing)
    identity = _verified(poe, licensing, licensing_keys)
    for other in (_poe(licensing, customer_id="CUST-A2"), _poe(licensing, exp=NOW + 3601)):
        assert _verified(other, licensing, licensing_keys) != identity


def test_poe_with_another_header_is_another_poe(licensing: LocalLicensing, licensing_keys: KeySet) -> None:
    poe = _poe(licensing)
    _, claims_b64, _ = poe.split(".")
    other = es256(
        licensing.key,
        text({"alg": "ES256", "kid": licensing.kid}),  # no "typ": a header PyJWT would not write
        b64url_decode(claims_b64).decode(),
    )
    assert _verified(other, licensing, licensing_keys) != _verified(poe, licensing, licensing_keys)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"customer_id": "Kunde Ü — 客户 🚀", "cnf": {"x5t#S256": "A" * 43}},
        {"score": 0.1, "ratio": 1e21, "tiny": 5e-324, "neg": -0.0, "z": [None, True, {"b": 1, "a": 2}]},
        {"\u20ac": 1, "\U0001f600": 2, "\ufb01": 3},  # members sorted by UTF-16 code units (RFC 8785 §3.2.3)
    ],
    ids=["plain", "non-ascii", "numbers", "utf16-order"],
)
def test_poe_identity_equals_the_independent_rfc8785_computation(
    licensing: LocalLicensing, overrides: dict[str, Any]
) -> None:
    poe = _poe(licensing, **overrides)
    header_b64, claims_b64, _ = poe.split(".")
    header_obj, claims_obj = (strict_json(b64url_decode(p)) for p in (header_b64, claims_b64))
    assert poe_identity(header_obj, claims_obj) == independent_poe_identity(poe)
    assert poe_identity_of(poe) == independent_poe_identity(poe)


@pytest.mark.parametrize("text_", ["not-a-jwt", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.W10.AA"])
def test_identity_of_text_that_is_no_jws_of_objects_is_the_sha256_of_the_text(text_: str) -> None:
    assert poe_identity_of(text_) == hashlib.sha256(text_.encode()).hexdigest()


def test_identity_of_a_poe_repeating_a_claim_is_the_sha256_of_its_text(licensing: LocalLicensing) -> None:
    """A PoE with two ``tid`` values has no one set of claims to name: its text names it."""
    claims = licensing.claims_for("tenant-a", "inst-1", now=NOW)
    poe = es256(
        licensing.key, text({"alg": "ES256", "kid": licensing.kid}), repeating(claims, "tid", "tenant-b")
    )
    assert poe_identity_of(poe) == hashlib.sha256(poe.encode()).hexdigest()


def test_poe_repeating_a_claim_is_denied_not_a_tenant_mismatch(
    licensing: LocalLicensing, licensing_keys: KeySet
) -> None:
    """A last-wins reading (tenant-a, the caller's) would accept it; a first-wins one (tenant-b) would
    answer tenant_mismatch: neither is chosen."""
    claims = licensing.claims_for("tenant-a", "inst-1", now=NOW)
    poe = es256(
        licensing.key,
        text({"alg": "ES256", "kid": licensing.kid}),
        repeating(claims, "tid", "tenant-b", first=True),
    )
    refused_as(EntitlementDenied, _verified, poe, licensing, licensing_keys)


def test_poe_with_nan_claims_is_denied(licensing: LocalLicensing, licensing_keys: KeySet) -> None:
    claims = text(licensing.claims_for("tenant-a", "inst-1", now=NOW, valid_release_year=0))
    claims = claims.replace('"valid_release_year":0', '"valid_release_year":NaN')
    poe = es256(licensing.key, text({"alg": "ES256", "kid": licensing.kid}), claims)
    refused_as(EntitlementDenied, _verified, poe, licensing, licensing_keys)
