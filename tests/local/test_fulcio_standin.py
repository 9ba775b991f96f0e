"""Contract tests of the Fulcio stand-in (fulcio.proto ``CA`` v2, RFC 6962 embedded SCTs) and of
the local Authority's identity-token grant for the Signer (spec §4 ``KeylessIdentityTokenUrl``,
§5.5 keyless signing). The last proof is sigstore-js: npm ``@sigstore/verify`` accepts the chain
and the SCT."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

from local import authority as authority_module
from local.authority import SIGNER_CLIENT_ID, SIGNER_IDENTITY, LocalAuthority
from local.fulcio import LocalFulcio, handler_for

ROOT = Path(__file__).resolve().parents[2]
FULCIO_CHECK = ROOT / "tests" / "interop" / "fulcio_check.mjs"
SCT_OID_DER = bytes.fromhex("060a2b06010401d679020402")  # 1.3.6.1.4.1.11129.2.4.2
ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


# -- servers -------------------------------------------------------------------------------------


def serve(server: ThreadingHTTPServer) -> str:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def authority_url(authority: LocalAuthority) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), authority_module.handler_for(authority, ""))
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = authority_module.handler_for(authority, base_url)
    yield serve(server)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fulcio(tmp_path_factory: pytest.TempPathFactory, authority: LocalAuthority) -> LocalFulcio:
    return LocalFulcio(
        tmp_path_factory.mktemp("fulcio"), oidc_issuer=authority.issuer, oidc_jwks=lambda: authority.jwks
    )


@pytest.fixture(scope="module")
def fulcio_url(fulcio: LocalFulcio) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fulcio))
    yield serve(server)
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def calm(fulcio: LocalFulcio) -> Iterator[None]:
    yield
    fulcio.fail_next, fulcio.down, fulcio.delay_seconds = [], False, 0.0
    fulcio.requests.clear()


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


# -- requests ------------------------------------------------------------------------------------


def _signer_grant(authority: LocalAuthority, authority_url: str) -> requests.Response:
    """The Signer's own client-credentials grant at the local Authority (its identity for Fulcio)."""
    return http().post(
        authority_url + "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": SIGNER_CLIENT_ID,
            "client_secret": authority.signer_client_secret,
        },
        timeout=5,
    )


@pytest.fixture(scope="module")
def identity_token(authority: LocalAuthority, authority_url: str) -> str:
    answer = _signer_grant(authority, authority_url)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id_token"])


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def certificate_request(token: str, key: ec.EllipticCurvePrivateKey, challenge: str | None = None) -> dict:
    """A CreateSigningCertificateRequest: the key signs the token's ``sub`` (or ``challenge``)."""
    signed = (
        challenge if challenge is not None else jwt.decode(token, options={"verify_signature": False})["sub"]
    )
    proof = key.sign(signed.encode(), ec.ECDSA(hashes.SHA256()))
    return {
        "credentials": {"oidcIdentityToken": token},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA", "content": public_pem(key)},
            "proofOfPossession": base64.b64encode(proof).decode(),
        },
    }


def post(fulcio_url: str, body: Any) -> requests.Response:
    return http().post(fulcio_url + "/api/v2/signingCert", json=body, timeout=5)


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def issued(
    fulcio: LocalFulcio, fulcio_url: str, identity_token: str, signing_key: ec.EllipticCurvePrivateKey
) -> dict[str, Any]:
    """One issuance over HTTP: the chain (PEM), the parsed certificates and the precert TBS."""
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    answer = post(fulcio_url, certificate_request(identity_token, signing_key))
    assert answer.status_code == 200, answer.text
    pems = answer.json()["signedCertificateEmbeddedSct"]["chain"]["certificates"]
    assert fulcio.last_issued is not None
    return {
        "pems": pems,
        "certs": [x509.load_pem_x509_certificate(pem.encode()) for pem in pems],
        "precert_tbs": fulcio.last_issued.precert_tbs,
        "before": before,
    }


# -- DER and TLS, parsed independently of the stand-in -----------------------------------------


def tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at ``offset``."""
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    return tag, offset + 2 + count, offset + 2 + count + length


def children(data: bytes, start: int, end: int) -> list[bytes]:
    items = []
    while start < end:
        _, _, value_end = tlv(data, start)
        items.append(data[start:value_end])
        start = value_end
    return items


def encode(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    octets = len(value).to_bytes((len(value).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + value


def split_sct_extension(tbs: bytes) -> tuple[bytes, bytes]:
    """(TBS re-encoded without the SCT extension, that extension's extnValue contents) — what
    sigstore-js and Go's ctutil do to recover the precertificate entry."""
    _, start, end = tlv(tbs, 0)
    fields, sct_value = [], b""
    for field in children(tbs, start, end):
        if field[0] == 0xA3:  # [3] EXPLICIT Extensions
            _, seq_start, _ = tlv(field, 0)
            _, ext_start, ext_end = tlv(field, seq_start)
            kept = []
            for extension in children(field, ext_start, ext_end):
                _, body_start, body_end = tlv(extension, 0)
                parts = children(extension, body_start, body_end)
                if parts[0] == SCT_OID_DER:
                    _, value_start, value_end = tlv(parts[-1], 0)
                    sct_value = parts[-1][value_start:value_end]
                else:
                    kept.append(extension)
            field = encode(0xA3, encode(0x30, b"".join(kept)))
        fields.append(field)
    return encode(0x30, b"".join(fields)), sct_value


def parse_sct_list(ext_value: bytes) -> list[dict[str, Any]]:
    """RFC 6962 §3.3: extnValue = OCTET STRING (SignedCertificateTimestampList)."""
    tag, start, end = tlv(ext_value, 0)
    assert tag == 0x04
    data = ext_value[start:end]
    total, position, scts = int.from_bytes(data[:2], "big"), 2, []
    assert total == len(data) - 2
    while position < len(data):
        length = int.from_bytes(data[position : position + 2], "big")
        sct = data[position + 2 : position + 2 + length]
        position += 2 + length
        ext_len = int.from_bytes(sct[41:43], "big")
        rest = sct[43 + ext_len :]
        sig_len = int.from_bytes(rest[2:4], "big")
        assert len(rest) == 4 + sig_len
        scts.append(
            {
                "version": sct[0],
                "log_id": sct[1:33],
                "timestamp": sct[33:41],
                "extensions": sct[43 : 43 + ext_len],
                "hash_alg": rest[0],
                "sig_alg": rest[1],
                "signature": rest[4:],
            }
        )
    return scts


# -- the Authority's grant for the Signer ------------------------------------------------------


def test_signer_grant_answers_an_oidc_identity_token_for_sigstore(
    authority: LocalAuthority, authority_url: str
) -> None:
    answer = _signer_grant(authority, authority_url)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "id_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 300)
    key = jwt.PyJWK(authority.jwks["keys"][0]).key
    claims = jwt.decode(
        body["id_token"], key, algorithms=["ES256"], audience="sigstore", issuer=authority.issuer
    )
    assert claims["sub"] == claims["email"] == SIGNER_IDENTITY
    assert claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 300
    assert jwt.get_unverified_header(body["id_token"])["kid"] == authority.kid


def test_signer_grant_accepts_http_basic_client_authentication(
    authority: LocalAuthority, authority_url: str
) -> None:
    answer = http().post(
        authority_url + "/token",
        data={"grant_type": "client_credentials"},
        auth=(SIGNER_CLIENT_ID, authority.signer_client_secret),
        timeout=5,
    )
    assert answer.status_code == 200
    assert jwt.decode(answer.json()["id_token"], options={"verify_signature": False})["aud"] == "sigstore"


def test_signer_grant_with_a_wrong_secret_is_invalid_client(authority_url: str) -> None:
    answer = http().post(
        authority_url + "/token",
        data={"grant_type": "client_credentials", "client_id": SIGNER_CLIENT_ID, "client_secret": "wrong"},
        timeout=5,
    )
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_client"}


def test_signer_grant_refused_over_basic_carries_a_basic_challenge(authority_url: str) -> None:
    answer = http().post(
        authority_url + "/token",
        data={"grant_type": "client_credentials"},
        auth=(SIGNER_CLIENT_ID, "wrong"),
        timeout=5,
    )
    assert (answer.status_code, answer.json()) == (401, {"error": "invalid_client"})
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_signer_client_secret_is_kept_beside_the_authority_key(tmp_path: Path) -> None:
    first = LocalAuthority(tmp_path / "authority.key")
    assert LocalAuthority(tmp_path / "authority.key").signer_client_secret == first.signer_client_secret
    assert len(first.signer_client_secret) >= 32


# -- the CA files ----------------------------------------------------------------------------------


def test_ca_is_reloaded_from_its_directory(fulcio: LocalFulcio) -> None:
    again = LocalFulcio(fulcio.dir, oidc_issuer=fulcio.oidc_issuer, oidc_jwks={"keys": []})
    assert (again.chain_pem, again.ctlog_id) == (fulcio.chain_pem, fulcio.ctlog_id)


def test_ca_certificates_are_a_root_and_an_intermediate_with_path_lengths(fulcio: LocalFulcio) -> None:
    root = x509.load_pem_x509_certificate(fulcio.root_pem.encode())
    intermediate = x509.load_pem_x509_certificate(fulcio.intermediate_pem.encode())
    assert fulcio.chain_pem == fulcio.intermediate_pem + fulcio.root_pem
    for cert, path_length in ((root, 1), (intermediate, 0)):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca and constraints.value.path_length == path_length
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    aki = intermediate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_ctlog_id_is_the_sha256_of_its_spki(fulcio: LocalFulcio) -> None:
    key = serialization.load_der_public_key(fulcio.ctlog_public_key_der)
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert fulcio.ctlog_id == hashlib.sha256(fulcio.ctlog_public_key_der).digest()


def test_trusted_root_names_the_ca_the_ct_log_and_the_tsa(fulcio: LocalFulcio) -> None:
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsa")])
    now = dt.datetime.now(dt.UTC)
    tsa = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tsa_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(tsa_key, hashes.SHA256())
    )
    root = fulcio.trusted_root([tsa.public_bytes(serialization.Encoding.PEM).decode()])
    assert root["mediaType"] == "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
    assert root["tlogs"] == []
    chain = [
        base64.b64decode(c["rawBytes"])
        for c in root["certificateAuthorities"][0]["certChain"]["certificates"]
    ]
    assert [
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode() for der in chain
    ] == [
        fulcio.intermediate_pem,
        fulcio.root_pem,
    ]
    (log,) = root["ctlogs"]
    assert log["hashAlgorithm"] == "SHA2_256" and log["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    assert base64.b64decode(log["publicKey"]["rawBytes"]) == fulcio.ctlog_public_key_der
    assert base64.b64decode(log["logId"]["keyId"]) == fulcio.ctlog_id
    (tsa_entry,) = root["timestampAuthorities"]
    assert tsa_entry["subject"]["commonName"] == "tsa"
    assert base64.b64decode(tsa_entry["certChain"]["certificates"][0]["rawBytes"]) == tsa.public_bytes(
        serialization.Encoding.DER
    )


def test_trust_bundle_serves_the_intermediate_then_the_root(fulcio: LocalFulcio, fulcio_url: str) -> None:
    answer = http().get(fulcio_url + "/api/v2/trustBundle", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"chains": [{"certificates": [fulcio.intermediate_pem, fulcio.root_pem]}]}


# -- the issued certificate --------------------------------------------------------------------------


def test_issued_chain_verifies_from_the_leaf_to_the_root(issued: dict[str, Any], fulcio: LocalFulcio) -> None:
    leaf, intermediate, root = issued["certs"]
    assert [issued["pems"][1], issued["pems"][2]] == [fulcio.intermediate_pem, fulcio.root_pem]
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(issued["before"] + dt.timedelta(minutes=1))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    verified = verifier.verify(leaf, [intermediate])
    assert verified.chain == [leaf, intermediate, root]


def test_leaf_holds_the_submitted_public_key(
    issued: dict[str, Any], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    assert issued["certs"][0].public_key() == signing_key.public_key()


def test_leaf_is_valid_for_ten_minutes_from_issuance(issued: dict[str, Any]) -> None:
    leaf = issued["certs"][0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(minutes=10)
    assert abs(leaf.not_valid_before_utc - issued["before"]) <= dt.timedelta(seconds=2)


def test_leaf_names_the_identity_in_a_critical_san_under_an_empty_subject(issued: dict[str, Any]) -> None:
    leaf = issued["certs"][0]
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.RFC822Name) == [SIGNER_IDENTITY]


def test_leaf_is_a_code_signing_certificate(issued: dict[str, Any]) -> None:
    leaf, intermediate, _ = issued["certs"]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING
    ]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())  # type: ignore[arg-type]


def test_leaf_carries_the_oidc_issuer_extensions(issued: dict[str, Any], authority: LocalAuthority) -> None:
    leaf = issued["certs"][0]
    v1 = leaf.extensions.get_extension_for_oid(ISSUER_V1).value
    v2 = leaf.extensions.get_extension_for_oid(ISSUER_V2).value
    assert v1.value == authority.issuer.encode()  # type: ignore[attr-defined]
    assert v2.value == encode(0x0C, authority.issuer.encode())  # type: ignore[attr-defined]


def test_precert_tbs_is_the_leaf_tbs_without_the_sct_extension(issued: dict[str, Any]) -> None:
    leaf = issued["certs"][0]
    reconstructed, _ = split_sct_extension(leaf.tbs_certificate_bytes)
    assert reconstructed == issued["precert_tbs"]
    assert leaf.tbs_precertificate_bytes == issued["precert_tbs"]  # cryptography's own derivation
    assert leaf.extensions[-1].oid.dotted_string == "1.3.6.1.4.1.11129.2.4.2"


def test_embedded_sct_verifies_against_the_ct_log_key(issued: dict[str, Any], fulcio: LocalFulcio) -> None:
    leaf, intermediate, _ = issued["certs"]
    precert_tbs, ext_value = split_sct_extension(leaf.tbs_certificate_bytes)
    (sct,) = parse_sct_list(ext_value)
    assert (sct["version"], sct["extensions"], sct["hash_alg"], sct["sig_alg"]) == (0, b"", 4, 3)
    published = fulcio.trusted_root()["ctlogs"][0]
    assert sct["log_id"] == base64.b64decode(published["logId"]["keyId"])
    issuer_key_hash = hashlib.sha256(
        intermediate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    signed = (
        b"\x00\x00"
        + sct["timestamp"]
        + b"\x00\x01"
        + issuer_key_hash
        + len(precert_tbs).to_bytes(3, "big")
        + precert_tbs
        + b"\x00\x00"
    )
    ct_key = serialization.load_der_public_key(base64.b64decode(published["publicKey"]["rawBytes"]))
    assert isinstance(ct_key, ec.EllipticCurvePublicKey)
    ct_key.verify(sct["signature"], signed, ec.ECDSA(hashes.SHA256()))
    moment = int.from_bytes(sct["timestamp"], "big") / 1000
    assert abs(moment - issued["before"].timestamp()) < 5


def test_csr_is_accepted_in_place_of_a_public_key_request(fulcio_url: str, identity_token: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    body = {
        "credentials": {"oidcIdentityToken": identity_token},
        "certificateSigningRequest": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
    }
    answer = post(fulcio_url, body)
    assert answer.status_code == 200, answer.text
    leaf_pem = answer.json()["signedCertificateEmbeddedSct"]["chain"]["certificates"][0]
    assert x509.load_pem_x509_certificate(leaf_pem.encode()).public_key() == key.public_key()


# -- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", ["another-subject", "another-key"])
def test_wrong_proof_of_possession_is_400(fulcio_url: str, identity_token: str, wrong: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    if wrong == "another-subject":
        body = certificate_request(identity_token, key, challenge="someone@else")
    else:
        body = certificate_request(identity_token, ec.generate_private_key(ec.SECP256R1()))
        body["publicKeyRequest"]["publicKey"]["content"] = public_pem(key)
    answer = post(fulcio_url, body)
    assert answer.status_code == 400
    assert answer.json()["code"] == 3


def test_csr_with_a_broken_self_signature_is_400(fulcio_url: str, identity_token: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x01  # the last byte of the signature's s
    body = {
        "credentials": {"oidcIdentityToken": identity_token},
        "certificateSigningRequest": base64.b64encode(der).decode(),
    }
    answer = post(fulcio_url, body)
    assert (answer.status_code, answer.json()["code"]) == (400, 3)


def test_key_other_than_p256_is_400(fulcio_url: str, identity_token: str) -> None:
    answer = post(fulcio_url, certificate_request(identity_token, ec.generate_private_key(ec.SECP384R1())))
    assert (answer.status_code, answer.json()["code"]) == (400, 3)


def forged_tokens(authority: LocalAuthority, tmp: Path) -> dict[str, str]:
    claims = authority.identity_token_claims()
    return {
        "signed-by-another-key": LocalAuthority(tmp / "other.key").mint(claims),
        "expired": authority.mint(authority.identity_token_claims(now=time.time() - 301)),
        "another-audience": authority.mint({**claims, "aud": "signer"}),
        "another-issuer": authority.mint({**claims, "iss": "https://elsewhere.example"}),
        "unverified-email": authority.mint({**claims, "email_verified": False}),
    }


@pytest.mark.parametrize(
    "case", ["signed-by-another-key", "expired", "another-audience", "another-issuer", "unverified-email"]
)
def test_identity_token_that_does_not_authenticate_is_401(
    fulcio_url: str, authority: LocalAuthority, tmp_path: Path, case: str
) -> None:
    token = forged_tokens(authority, tmp_path)[case]
    answer = post(fulcio_url, certificate_request(token, ec.generate_private_key(ec.SECP256R1())))
    assert answer.status_code == 401
    assert answer.json()["code"] == 16


def test_request_without_a_token_is_401(fulcio_url: str) -> None:
    body = certificate_request("", ec.generate_private_key(ec.SECP256R1()), challenge=SIGNER_IDENTITY)
    del body["credentials"]
    assert post(fulcio_url, body).status_code == 401


# -- fault knobs -----------------------------------------------------------------------------------


def test_fail_next_answers_its_statuses_then_issues(
    fulcio: LocalFulcio, fulcio_url: str, identity_token: str
) -> None:
    fulcio.fail_next = [503, 503]
    body = certificate_request(identity_token, ec.generate_private_key(ec.SECP256R1()))
    first, second, third = (post(fulcio_url, body) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json()["code"] == 14
    assert fulcio.fail_next == []


def test_down_answers_503_to_every_request(fulcio: LocalFulcio, fulcio_url: str, identity_token: str) -> None:
    fulcio.down = True
    body = certificate_request(identity_token, ec.generate_private_key(ec.SECP256R1()))
    assert [post(fulcio_url, body).status_code for _ in range(2)] == [503, 503]
    assert http().get(fulcio_url + "/api/v2/trustBundle", timeout=5).status_code == 503


def test_delay_holds_the_answer(fulcio: LocalFulcio, fulcio_url: str) -> None:
    fulcio.delay_seconds = 0.3
    started = time.monotonic()
    http().get(fulcio_url + "/api/v2/trustBundle", timeout=5)
    assert time.monotonic() - started >= 0.3


def test_request_log_never_holds_the_identity_token(
    fulcio: LocalFulcio, fulcio_url: str, identity_token: str
) -> None:
    post(fulcio_url, certificate_request(identity_token, ec.generate_private_key(ec.SECP256R1())))
    ((path, body),) = fulcio.requests
    assert path == "/api/v2/signingCert"
    assert body["credentials"] == {} and "publicKeyRequest" in body
    assert identity_token not in json.dumps(fulcio.requests)


# -- the independent verifier: sigstore-js ---------------------------------------------------------


def fulcio_check(
    tmp_path: Path, trusted_root: dict, leaf_pem: str, when: dt.datetime
) -> subprocess.CompletedProcess:
    assert (ROOT / "tests" / "interop" / "node_modules" / "@sigstore" / "verify").is_dir(), "run make test"
    (tmp_path / "trusted_root.json").write_text(json.dumps(trusted_root))
    (tmp_path / "leaf.pem").write_text(leaf_pem)
    return subprocess.run(
        [
            "node",
            str(FULCIO_CHECK),
            str(tmp_path / "trusted_root.json"),
            str(tmp_path / "leaf.pem"),
            when.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_sigstore_verify_accepts_the_chain_and_the_embedded_sct(
    issued: dict[str, Any], fulcio: LocalFulcio, tmp_path: Path, authority: LocalAuthority
) -> None:
    result = fulcio_check(
        tmp_path, fulcio.trusted_root(), issued["pems"][0], issued["before"] + dt.timedelta(minutes=1)
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["sctLogIds"] == [fulcio.ctlog_id.hex()]
    assert (answer["issuer"], answer["san"]) == (authority.issuer, SIGNER_IDENTITY)


def test_sigstore_verify_refuses_the_sct_under_another_ct_key(
    issued: dict[str, Any], fulcio: LocalFulcio, tmp_path: Path
) -> None:
    trusted_root = fulcio.trusted_root()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    trusted_root["ctlogs"][0]["publicKey"]["rawBytes"] = base64.b64encode(
        other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()  # same log id, another key: only the SCT signature can fail
    result = fulcio_check(
        tmp_path, trusted_root, issued["pems"][0], issued["before"] + dt.timedelta(minutes=1)
    )
    assert result.returncode == 1
    assert "SCT verification failed" in result.stderr


def test_sigstore_verify_refuses_the_leaf_after_its_ten_minutes(
    issued: dict[str, Any], fulcio: LocalFulcio, tmp_path: Path
) -> None:
    result = fulcio_check(
        tmp_path, fulcio.trusted_root(), issued["pems"][0], issued["before"] + dt.timedelta(minutes=11)
    )
    assert result.returncode == 1
    assert "expired" in result.stderr
