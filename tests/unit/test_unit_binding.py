"""mTLS sender constraint (RFC 8705 §3, spec §3.1): the certificate the token is bound to."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stellaops_signer.domain.binding import Principal, certificate_thumbprint, verify_certificate_binding
from stellaops_signer.domain.errors import InvalidToken
from stellaops_signer.domain.tokens import OpToken


def self_signed(common_name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def x5t_s256(certificate: x509.Certificate) -> str:
    """Computed independently: base64url(SHA-256(DER)), no padding."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


CLIENT = self_signed("scanner-1")
OTHER = self_signed("scanner-2")


def op_token(binding: str = "x5t#S256", sender_key: str | None = None) -> OpToken:
    return OpToken(
        subject="scanner-1",
        client_id="scanner-client",
        tenant="tenant-a",
        installation="install-1",
        scopes=frozenset({"signer.sign"}),
        binding=binding,  # type: ignore[arg-type]
        sender_key=sender_key if sender_key is not None else x5t_s256(CLIENT),
        issued_at=1_700_000_000,
        expires_at=1_700_000_300,
        token_id=None,
    )


def assert_refused(token: OpToken, client_cert_pem: str | None) -> None:
    with pytest.raises(InvalidToken) as caught:
        verify_certificate_binding(token, client_cert_pem)
    assert (caught.value.code, caught.value.status) == ("invalid_token", 401)


def test_certificate_thumbprint_is_unpadded_base64url_sha256_of_the_der() -> None:
    thumbprint = certificate_thumbprint(pem(CLIENT))
    assert thumbprint == x5t_s256(CLIENT)
    assert len(thumbprint) == 43
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", thumbprint)


def test_certificate_thumbprint_is_not_hex() -> None:
    der = CLIENT.public_bytes(serialization.Encoding.DER)
    assert certificate_thumbprint(pem(CLIENT)) != hashlib.sha256(der).hexdigest()


def test_unparseable_certificate_is_refused() -> None:
    with pytest.raises(InvalidToken):
        certificate_thumbprint("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")


def test_token_presented_with_the_certificate_it_is_bound_to_is_accepted() -> None:
    verify_certificate_binding(op_token(), pem(CLIENT))


def test_token_presented_with_another_certificate_is_refused() -> None:
    assert_refused(op_token(), pem(OTHER))


@pytest.mark.parametrize("client_cert_pem", [None, ""], ids=["none", "empty"])
def test_certificate_bound_token_without_a_client_certificate_is_refused(client_cert_pem: str | None) -> None:
    assert_refused(op_token(), client_cert_pem)


def test_dpop_bound_token_presented_as_bearer_is_refused_as_a_downgrade() -> None:
    # A jkt-bound token whose thumbprint happens to equal the presented certificate's still fails.
    assert_refused(op_token(binding="jkt", sender_key=x5t_s256(CLIENT)), pem(CLIENT))


def test_principal_from_an_iam_invocation_carries_no_sender_key() -> None:
    token = op_token()
    assert Principal.from_token(token, "mtls").sender_key == token.sender_key
    assert Principal.from_token(token, "iam").sender_key == ""
    assert Principal.from_token(replace(token, scopes=frozenset()), "mtls").scopes == frozenset()
