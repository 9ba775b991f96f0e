"""Keyless signing's trust decisions (spec §5.5): is the chain a Fulcio CA returned the one we trust,
for the key we hold, valid now — and who does it say we are?

Pure: certificates, roots and the time are inputs. Path building and signature checks are
``cryptography``'s X.509 verifier (RFC 5280); what Fulcio adds — the OIDC issuer extension, the
code-signing purpose — is read here. Every failure raises SigningUnavailable: a chain we cannot
trust is the CA failing us, not the caller's fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from stellaops_signer.domain.errors import ConfigurationError, SigningUnavailable

#: Fulcio's OIDC issuer extensions: v2 (a DER UTF8String) and the original (raw UTF-8).
FULCIO_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
FULCIO_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_UTF8_STRING = 0x0C


@dataclass(frozen=True, slots=True)
class CertifiedIdentity:
    """A verified Fulcio leaf: who it names and until when."""

    chain_pem: tuple[str, ...]
    issuer: str
    subject: str
    not_after: datetime
    serial: str


def parse_certificates(pem: str, variable: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM setting; raises ConfigurationError naming ``variable``."""
    try:
        certificates = tuple(x509.load_pem_x509_certificates(pem.encode("ascii")))
    except ValueError:
        raise ConfigurationError(f"{variable} holds no PEM certificate") from None
    return certificates


def roots_of(certificates: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The self-signed certificates of a trust setting (the others are intermediates)."""
    return tuple(c for c in certificates if c.subject == c.issuer)


def verify_chain(
    chain_pem: Sequence[str],
    trusted: Sequence[x509.Certificate],
    public_key_der: bytes,
    now: datetime,
) -> CertifiedIdentity:
    """Verify a Fulcio answer: the leaf chains to a root of ``trusted`` (its intermediates may come
    from the answer or from ``trusted``), is valid at ``now``, is for code signing, and certifies
    exactly ``public_key_der`` (a DER SubjectPublicKeyInfo). Raises SigningUnavailable."""
    try:
        certificates = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in chain_pem]
    except (ValueError, UnicodeError):
        raise SigningUnavailable("the keyless CA answered a certificate that does not parse") from None
    if not certificates:
        raise SigningUnavailable("the keyless CA answered no certificate")
    leaf, rest = certificates[0], certificates[1:]
    if leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != public_key_der:
        raise SigningUnavailable("the keyless CA certified another key than ours")
    roots = roots_of(trusted)
    if not roots:
        raise SigningUnavailable("no keyless CA root is configured")
    intermediates = [c for c in (*rest, *trusted) if c.subject != c.issuer]
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(now)
        .max_chain_depth(4)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise SigningUnavailable(f"the keyless CA's certificate does not verify: {exc}") from None
    try:
        purposes = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise SigningUnavailable("the keyless certificate names no purpose") from None
    if ExtendedKeyUsageOID.CODE_SIGNING not in purposes:
        raise SigningUnavailable("the keyless certificate is not for code signing")
    return CertifiedIdentity(
        chain_pem=tuple(chain_pem),
        issuer=_oidc_issuer(leaf),
        subject=_subject(leaf),
        not_after=leaf.not_valid_after_utc,
        serial=format(leaf.serial_number, "x"),
    )


def _subject(leaf: x509.Certificate) -> str:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SigningUnavailable("the keyless certificate names no subject") from None
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        values = names.get_values_for_type(kind)
        if values:
            return str(values[0])
    raise SigningUnavailable("the keyless certificate names no subject")


def _oidc_issuer(leaf: x509.Certificate) -> str:
    for oid in (FULCIO_ISSUER_V1, FULCIO_ISSUER_V2):  # the raw form first: no DER to read
        try:
            raw = leaf.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        value = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
        if oid == FULCIO_ISSUER_V2:  # a DER UTF8String: tag, short-form length, text
            if len(value) < 2 or value[0] != _UTF8_STRING or value[1] != len(value) - 2:
                raise SigningUnavailable("the keyless certificate's issuer extension is malformed")
            value = value[2:]
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise SigningUnavailable("the keyless certificate's issuer extension is malformed") from None
    raise SigningUnavailable("the keyless certificate names no OIDC issuer")


__all__ = [
    "FULCIO_ISSUER_V1",
    "FULCIO_ISSUER_V2",
    "CertifiedIdentity",
    "parse_certificates",
    "roots_of",
    "verify_chain",
]
