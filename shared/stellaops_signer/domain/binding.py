"""Sender constraint: proving that the caller holds the key its OpTok is bound to.

mTLS (RFC 8705 §3): the token's ``cnf.x5t#S256`` must equal the base64url SHA-256 of the
DER client certificate that terminated TLS. DPoP (RFC 9449) plugs in beside it as a
``ProofVerifier``; the authenticator picks the check from the Authorization scheme.
"""

from __future__ import annotations

import hmac
import ssl
from dataclasses import dataclass
from typing import Literal

from stellaops_signer.domain.errors import InvalidToken
from stellaops_signer.domain.jose import sha256_b64url
from stellaops_signer.domain.tokens import OpToken

BindingKind = Literal["mtls", "dpop", "iam"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the authorizer proved it; what the functions authorize against."""

    subject: str
    client_id: str
    tenant: str
    installation: str
    scopes: frozenset[str]
    binding: BindingKind
    #: Thumbprint of the proven sender key (x5t#S256 or jkt); empty for ``iam``.
    sender_key: str

    @classmethod
    def from_token(cls, token: OpToken, binding: BindingKind) -> Principal:
        sender_key = token.sender_key if binding != "iam" else ""
        return cls(
            token.subject,
            token.client_id,
            token.tenant,
            token.installation,
            token.scopes,
            binding,
            sender_key,
        )


def certificate_thumbprint(pem: str) -> str:
    """``x5t#S256`` of a PEM certificate: base64url(SHA-256(DER)), no padding (RFC 8705 §3.1).

    The thumbprint is over the DER bytes as presented; parsing the certificate is TLS's job
    (API Gateway has verified it against the truststore), so only the PEM armour is removed.
    """
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except (ValueError, UnicodeError):
        raise InvalidToken("the client certificate cannot be parsed") from None
    if not der:
        raise InvalidToken("the client certificate cannot be parsed")
    return sha256_b64url(der)


def verify_certificate_binding(token: OpToken, client_cert_pem: str | None) -> None:
    """RFC 8705 §3: the certificate presented in TLS must be the one the token is bound to."""
    if token.binding != "x5t#S256":
        raise InvalidToken("a DPoP-bound token must be presented with the DPoP scheme")
    if not client_cert_pem:
        raise InvalidToken("the token is certificate-bound but no client certificate was presented")
    if not hmac.compare_digest(certificate_thumbprint(client_cert_pem), token.sender_key):
        raise InvalidToken("the token is bound to another client certificate")


__all__ = ["BindingKind", "Principal", "certificate_thumbprint", "verify_certificate_binding"]
