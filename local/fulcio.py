"""A local stand-in for a Fulcio CA (sigstore/fulcio ``fulcio.proto``, service ``CA`` v2).

``POST /api/v2/signingCert`` takes a ``CreateSigningCertificateRequest`` in its protojson form::

    {"credentials": {"oidcIdentityToken": "<JWT>"},
     "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": "<PEM SPKI>"},
                          "proofOfPossession": "<base64 DER ECDSA signature>"}}

or, instead of ``publicKeyRequest``, a ``certificateSigningRequest`` (proto ``bytes``: base64 of
the PEM CSR; a bare PEM string is accepted too). The steps follow Fulcio's
``grpc_server.go``: the identity token is verified (ES256 against the configured JWKS, ``iss``,
``aud``, ``exp``; an email token must say ``email_verified``) → else 401 ``Unauthenticated``; the
public key is parsed (P-256 only here) and the proof of possession checked → else 400
``InvalidArgument``. The proof is an ECDSA-SHA256 signature over the token's ``sub`` claim
(Fulcio's documented challenge; the local Authority's tokens have ``sub`` = ``email``, so the
email-principal rule of real Fulcio gives the same bytes).

The answer is ``{"signedCertificateEmbeddedSct": {"chain": {"certificates": [leaf, intermediate,
root]}}}``: a 10-minute code-signing leaf with an empty subject, the identity as a critical SAN,
Fulcio's OIDC-issuer extensions and an embedded SCT (RFC 6962 §3.3) from a local CT log key over
the precertificate entry (§3.2). The precertificate's TBS is the leaf's TBS without the SCT
extension, so the leaf is built twice with the same serial, validity and extensions (the SCT list
last); verifiers (sigstore-js, Go's ctutil) recover it by deleting that extension and
re-encoding. Errors are grpc-gateway JSON ``{"code": <grpc code>, "message": ..., "details": []}``.

Fault knobs, read per request by :meth:`LocalFulcio.handle`: ``fail_next`` (statuses answered
one per request, e.g. ``[503, 503]`` then success), ``down`` (503 always), ``delay_seconds``;
``requests`` logs ``(path, body)`` with the identity token removed.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from local.pki import read_key, write_key
from local.tls import JsonHandler

SIGNING_CERT_PATH = "/api/v2/signingCert"
TRUST_BUNDLE_PATH = "/api/v2/trustBundle"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
DEFAULT_URL = "https://fulcio.stellaops.local"
DEFAULT_CTLOG_URL = "https://ctfe.stellaops.local"

LEAF_VALIDITY = dt.timedelta(minutes=10)
CA_VALIDITY = dt.timedelta(days=180)
CA_RENEW_BEFORE = dt.timedelta(days=2)

#: Fulcio's certificate extensions (docs/oid-info.md): the OIDC issuer, v1 (raw UTF-8 bytes,
#: deprecated) and v2 (a DER UTF8String).
OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
#: RFC 6962 §3.3: the embedded SignedCertificateTimestampList.
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

# gRPC status codes (google.golang.org/grpc/codes) and the HTTP statuses grpc-gateway maps them to.
INVALID_ARGUMENT, UNAUTHENTICATED, INTERNAL, UNAVAILABLE = 3, 16, 13, 14
_GRPC_FOR_HTTP = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 501: 12, 503: 14, 504: 4}

INVALID_CREDENTIALS = "There was an error processing the identity token"
INVALID_PUBLIC_KEY = "The public key supplied in the request could not be parsed"
INSECURE_PUBLIC_KEY = "The public key supplied in the request is insecure"
INVALID_SIGNATURE = "The signature supplied in the request could not be verified"
INVALID_CSR = "The certificate signing request could not be parsed"


class FulcioError(Exception):
    """A refusal with the gRPC code and HTTP status grpc-gateway would answer."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": []}


@dataclass(frozen=True)
class IssuedLeaf:
    """What the last issuance produced (tests compare the precertificate TBS with the leaf's)."""

    certificate_pem: str
    precert_tbs: bytes
    sct_timestamp_ms: int


# -- DER and TLS encoding helpers -------------------------------------------------------------


def der_length(length: int) -> bytes:
    """X.690 §8.1.3: short form below 128, else the minimal long form."""
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + der_length(len(value)) + value


def precert_signed_data(timestamp_ms: int, issuer_key_hash: bytes, tbs: bytes) -> bytes:
    """RFC 6962 §3.2 ``digitally-signed`` input of a v1 SCT over a ``precert_entry``."""
    return (
        b"\x00"  # sct_version v1
        + b"\x00"  # signature_type certificate_timestamp
        + timestamp_ms.to_bytes(8, "big")
        + (1).to_bytes(2, "big")  # entry_type precert_entry
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + (0).to_bytes(2, "big")  # CtExtensions, empty
    )


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _proto_bytes(value: Any) -> bytes:
    """A protojson ``bytes`` field: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str) or not value:
        raise ValueError("not a base64 string")
    text = value.strip()
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("not a base64 string") from error


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Stella Ops dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


# -- the CA -----------------------------------------------------------------------------------


def _ca_certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    path_length: int,
    now: dt.datetime,
) -> x509.Certificate:
    """A CA certificate of the dev Fulcio chain: self-signed when ``issuer`` is None."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    issuer_ski = (
        ski if issuer is None else issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(subject) if issuer is None else issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
        )
        .sign(signing_key, hashes.SHA384())
    )


class LocalFulcio:
    """A Fulcio CA with a root, an intermediate and a CT log key, kept under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        oidc_issuer: str,
        oidc_jwks: Callable[[], dict[str, Any]] | dict[str, Any],
        audience: str = "sigstore",
        base_url: str = DEFAULT_URL,
        ctlog_url: str = DEFAULT_CTLOG_URL,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.oidc_issuer = oidc_issuer
        self.oidc_jwks = oidc_jwks
        self.audience = audience
        self.base_url = base_url
        self.ctlog_url = ctlog_url
        self.fail_next: list[int] = []
        self.down = False
        self.delay_seconds = 0.0
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.last_issued: IssuedLeaf | None = None
        self._lock = threading.Lock()
        self._load_or_create()

    # files: root.pem/.key, intermediate.pem/.key, ctlog.key — all made together, renewed together

    FILES = ("root.pem", "root.key", "intermediate.pem", "intermediate.key", "ctlog.key")

    def _load_or_create(self) -> None:
        if not all((self.dir / name).exists() for name in self.FILES) or self._expiring():
            self._create()
        self._root = x509.load_pem_x509_certificate((self.dir / "root.pem").read_bytes())
        self._intermediate = x509.load_pem_x509_certificate((self.dir / "intermediate.pem").read_bytes())
        self._intermediate_key = read_key(self.dir / "intermediate.key")
        self._ctlog_key = read_key(self.dir / "ctlog.key")
        self._issuer_key_hash = hashlib.sha256(_spki(self._intermediate_key.public_key())).digest()
        self._intermediate_ski = self._intermediate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value

    def _expiring(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        for name in ("root.pem", "intermediate.pem"):
            cert = x509.load_pem_x509_certificate((self.dir / name).read_bytes())
            if cert.not_valid_after_utc - now < CA_RENEW_BEFORE:
                return True
        return False

    def _create(self) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
        root_key = ec.generate_private_key(ec.SECP384R1())
        intermediate_key = ec.generate_private_key(ec.SECP384R1())
        ctlog_key = ec.generate_private_key(ec.SECP256R1())
        root = _ca_certificate("Stella Ops dev Fulcio root", root_key.public_key(), root_key, None, 1, now)
        intermediate = _ca_certificate(
            "Stella Ops dev Fulcio intermediate", intermediate_key.public_key(), root_key, root, 0, now
        )
        write_key(self.dir / "root.key", root_key)
        write_key(self.dir / "intermediate.key", intermediate_key)
        write_key(self.dir / "ctlog.key", ctlog_key)
        (self.dir / "root.pem").write_text(_pem(root))
        (self.dir / "intermediate.pem").write_text(_pem(intermediate))

    # -- published material ---------------------------------------------------------------------

    @property
    def root_pem(self) -> str:
        return _pem(self._root)

    @property
    def intermediate_pem(self) -> str:
        return _pem(self._intermediate)

    @property
    def chain_pem(self) -> str:
        """Intermediate then root: the Signer's ``FulcioRootCertificates``."""
        return self.intermediate_pem + self.root_pem

    @property
    def ctlog_public_key_der(self) -> bytes:
        return _spki(self._ctlog_key.public_key())

    @property
    def ctlog_id(self) -> bytes:
        """RFC 6962 §3.2: the log ID is the SHA-256 hash of the log's DER SubjectPublicKeyInfo."""
        return hashlib.sha256(self.ctlog_public_key_der).digest()

    def trusted_root(self, tsa_chain_pems: list[str] | None = None) -> dict[str, Any]:
        """A sigstore ``TrustedRoot`` (protobuf-specs ``sigstore_trustroot.proto``, protojson) that
        trusts this CA, its CT log and the given TSA chains (each PEM: leaf first, root last)."""
        start = _rfc3339(self._root.not_valid_before_utc)
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [],
            "certificateAuthorities": [
                _authority([self._intermediate, self._root], uri=self.base_url, start=start)
            ],
            "ctlogs": [
                {
                    "baseUrl": self.ctlog_url,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(self.ctlog_public_key_der),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": start},
                    },
                    "logId": {"keyId": _b64(self.ctlog_id)},
                }
            ],
            "timestampAuthorities": [
                _authority(
                    certs,
                    uri="",
                    start=_rfc3339(min(cert.not_valid_before_utc for cert in certs)),
                )
                for certs in (x509.load_pem_x509_certificates(pem.encode()) for pem in tsa_chain_pems or [])
            ],
        }

    def trust_bundle(self) -> dict[str, Any]:
        """``GetTrustBundle``: each chain starts with the intermediates and ends with the root."""
        return {"chains": [{"certificates": [self.intermediate_pem, self.root_pem]}]}

    # -- requests ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """One HTTP request: applies the fault knobs, logs it, then routes it."""
        path = urlsplit(path).path
        with self._lock:
            self.requests.append((path, _without_token(body)))
            forced = self.fail_next.pop(0) if self.fail_next else None
            down, delay = self.down, self.delay_seconds
        if delay:
            time.sleep(delay)
        if down:
            return 503, FulcioError(503, UNAVAILABLE, "service unavailable").body()
        if forced is not None and forced >= 400:
            code = _GRPC_FOR_HTTP.get(forced, INTERNAL)
            return forced, FulcioError(forced, code, f"injected failure ({forced})").body()
        if method == "POST" and path == SIGNING_CERT_PATH:
            if not isinstance(body, dict):
                return 400, FulcioError(400, INVALID_ARGUMENT, "the body is not a JSON object").body()
            return self.issue(body)
        if method == "GET" and path == TRUST_BUNDLE_PATH:
            return 200, self.trust_bundle()
        return 404, FulcioError(404, 5, "Not Found").body()

    def issue(self, request: Mapping[str, Any], now: dt.datetime | None = None) -> tuple[int, dict[str, Any]]:
        """``CreateSigningCertificate``: ``(200, SigningCertificate)`` or ``(4xx, error)``."""
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        try:
            claims = self._verify_token(request.get("credentials"), now)
            public_key = self._proven_key(request, str(claims["sub"]))
            leaf = self._issue_leaf(public_key, claims, now)
        except FulcioError as error:
            return error.status, error.body()
        chain = [_pem(leaf), self.intermediate_pem, self.root_pem]
        return 200, {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}

    def _jwks(self) -> dict[str, Any]:
        return self.oidc_jwks() if callable(self.oidc_jwks) else self.oidc_jwks

    def _verify_token(self, credentials: Any, now: dt.datetime) -> dict[str, Any]:
        """Authenticates the OIDC identity token (OpenID Connect Core §3.1.3.7) → else 401."""
        token = credentials.get("oidcIdentityToken") if isinstance(credentials, dict) else None
        if not isinstance(token, str) or not token:
            raise FulcioError(401, UNAUTHENTICATED, INVALID_CREDENTIALS)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            keys = [
                k
                for k in self._jwks().get("keys", [])
                if k.get("kty") == "EC" and (kid is None or k.get("kid") == kid)
            ]
            claims: dict[str, Any] | None = None
            for jwk in keys:
                try:
                    claims = jwt.decode(
                        token,
                        jwt.PyJWK(jwk, algorithm="ES256").key,
                        algorithms=["ES256"],
                        audience=self.audience,
                        issuer=self.oidc_issuer,
                        # exp/iat are checked below against ``now`` (time is an input here)
                        options={
                            "require": ["iss", "aud", "sub", "exp"],
                            "verify_exp": False,
                            "verify_iat": False,
                            "verify_nbf": False,
                        },
                    )
                    break
                except jwt.InvalidSignatureError:
                    continue
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise FulcioError(401, UNAUTHENTICATED, INVALID_CREDENTIALS) from error
        if claims is None:
            raise FulcioError(401, UNAUTHENTICATED, INVALID_CREDENTIALS)
        moment = now.timestamp()
        if not isinstance(claims["exp"], int | float) or claims["exp"] <= moment:
            raise FulcioError(401, UNAUTHENTICATED, INVALID_CREDENTIALS)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise FulcioError(401, UNAUTHENTICATED, INVALID_CREDENTIALS)
        if "email" in claims and claims.get("email_verified") is not True:
            raise FulcioError(401, UNAUTHENTICATED, "The email address in the identity token is not verified")
        return claims

    def _proven_key(self, request: Mapping[str, Any], subject: str) -> ec.EllipticCurvePublicKey:
        """The submitted P-256 key, once its proof of possession holds → else 400."""
        key_request, csr_field = request.get("publicKeyRequest"), request.get("certificateSigningRequest")
        if (key_request is None) == (csr_field is None):
            raise FulcioError(
                400, INVALID_ARGUMENT, "exactly one of publicKeyRequest, certificateSigningRequest"
            )
        if csr_field is not None:
            return self._csr_key(csr_field)
        if not isinstance(key_request, dict) or not isinstance(key_request.get("publicKey"), dict):
            raise FulcioError(400, INVALID_ARGUMENT, INVALID_PUBLIC_KEY)
        algorithm = key_request["publicKey"].get("algorithm", "PUBLIC_KEY_ALGORITHM_UNSPECIFIED")
        if algorithm not in ("ECDSA", "PUBLIC_KEY_ALGORITHM_UNSPECIFIED", 2, 0):
            raise FulcioError(400, INVALID_ARGUMENT, INSECURE_PUBLIC_KEY)
        key = _p256(_public_key(key_request["publicKey"].get("content")))
        try:
            signature = _proto_bytes(key_request.get("proofOfPossession"))
            # Fulcio's challenge: the key signs the token's subject (ECDSA with SHA-256).
            key.verify(signature, subject.encode(), ec.ECDSA(hashes.SHA256()))
        except (ValueError, InvalidSignature) as error:
            raise FulcioError(400, INVALID_ARGUMENT, INVALID_SIGNATURE) from error
        return key

    @staticmethod
    def _csr_key(field: Any) -> ec.EllipticCurvePublicKey:
        try:
            if isinstance(field, str) and field.lstrip().startswith("-----BEGIN"):
                data = field.encode()
            else:
                data = _proto_bytes(field)
            csr = (
                x509.load_pem_x509_csr(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_csr(data)
            )
        except ValueError as error:
            raise FulcioError(400, INVALID_ARGUMENT, INVALID_CSR) from error
        key = _p256(csr.public_key())
        if not csr.is_signature_valid:
            raise FulcioError(400, INVALID_ARGUMENT, INVALID_SIGNATURE)
        return key

    def _issue_leaf(
        self, public_key: ec.EllipticCurvePublicKey, claims: Mapping[str, Any], now: dt.datetime
    ) -> x509.Certificate:
        """Builds the precertificate TBS, logs it (the SCT), then the final leaf with the SCT last."""
        not_before = now.replace(microsecond=0)
        serial = x509.random_serial_number()
        email = claims.get("email")
        identity: x509.GeneralName = (
            x509.RFC822Name(email)
            if isinstance(email, str) and email
            else x509.UniformResourceIdentifier(claims["sub"])
        )
        issuer = str(claims["iss"])

        def builder() -> x509.CertificateBuilder:
            return (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self._intermediate.subject)
                .public_key(public_key)
                .serial_number(serial)
                .not_valid_before(not_before)
                .not_valid_after(not_before + LEAF_VALIDITY)
                .add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._intermediate_ski),
                    critical=False,
                )
                # RFC 5280 §4.2.1.6: with an empty subject the SAN is critical.
                .add_extension(x509.SubjectAlternativeName([identity]), critical=True)
                .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), critical=False)
                .add_extension(
                    x509.UnrecognizedExtension(OID_ISSUER_V2, der_tlv(0x0C, issuer.encode())), critical=False
                )
            )

        precert_tbs = builder().sign(self._intermediate_key, hashes.SHA384()).tbs_certificate_bytes
        timestamp_ms = int(now.timestamp() * 1000)
        sct_list = self._sct_list(timestamp_ms, precert_tbs)
        leaf = (
            builder()
            .add_extension(x509.UnrecognizedExtension(OID_SCT_LIST, der_tlv(0x04, sct_list)), critical=False)
            .sign(self._intermediate_key, hashes.SHA384())
        )
        if leaf.tbs_precertificate_bytes != precert_tbs:  # the SCT would not verify anywhere
            raise FulcioError(500, INTERNAL, "Error building cert from precertificate")
        with self._lock:
            self.last_issued = IssuedLeaf(_pem(leaf), precert_tbs, timestamp_ms)
        return leaf

    def _sct_list(self, timestamp_ms: int, precert_tbs: bytes) -> bytes:
        """RFC 6962 §3.3: a SignedCertificateTimestampList holding one v1 SCT (§3.2) by the CT key."""
        signed = precert_signed_data(timestamp_ms, self._issuer_key_hash, precert_tbs)
        signature = self._ctlog_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            b"\x00"  # v1
            + self.ctlog_id
            + timestamp_ms.to_bytes(8, "big")
            + (0).to_bytes(2, "big")  # no extensions
            + b"\x04\x03"  # RFC 5246 §7.4.1.4.1: hash sha256(4), signature ecdsa(3)
            + len(signature).to_bytes(2, "big")
            + signature
        )
        entry = len(sct).to_bytes(2, "big") + sct
        return len(entry).to_bytes(2, "big") + entry


def _authority(certs: list[x509.Certificate], *, uri: str, start: str) -> dict[str, Any]:
    """A protobuf-specs ``CertificateAuthority`` (also the shape of ``timestampAuthorities``)."""
    subject = certs[0].subject
    organization = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    common_name = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    authority: dict[str, Any] = {
        "subject": {
            "organization": str(organization[0].value) if organization else "",
            "commonName": str(common_name[0].value) if common_name else "",
        },
        "certChain": {
            "certificates": [{"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in certs]
        },
        "validFor": {"start": start},
    }
    if uri:
        authority["uri"] = uri
    return authority


def _public_key(content: Any) -> Any:
    """``PublicKey.content``: PEM, else base64 DER SubjectPublicKeyInfo."""
    if not isinstance(content, str) or not content:
        raise FulcioError(400, INVALID_ARGUMENT, INVALID_PUBLIC_KEY)
    try:
        if content.lstrip().startswith("-----BEGIN"):
            return serialization.load_pem_public_key(content.encode())
        return serialization.load_der_public_key(_proto_bytes(content))
    except (ValueError, TypeError) as error:
        raise FulcioError(400, INVALID_ARGUMENT, INVALID_PUBLIC_KEY) from error


def _p256(key: Any) -> ec.EllipticCurvePublicKey:
    """This CA certifies ECDSA P-256 keys only (what the Signer generates)."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise FulcioError(400, INVALID_ARGUMENT, INSECURE_PUBLIC_KEY)
    return key


def _without_token(body: Any) -> dict[str, Any]:
    """The request as logged: never the bearer identity token."""
    if not isinstance(body, dict):
        return {}
    logged = copy.deepcopy(body)
    credentials = logged.get("credentials")
    if isinstance(credentials, dict):
        credentials.pop("oidcIdentityToken", None)
    return logged


def handler_for(fulcio: LocalFulcio) -> type[BaseHTTPRequestHandler]:
    """Fulcio's HTTP (grpc-gateway) surface: ``POST /api/v2/signingCert``, ``GET /api/v2/trustBundle``."""

    class FulcioHandler(JsonHandler):
        def do_GET(self) -> None:
            status, answer = fulcio.handle("GET", self.path, None)
            self.send_json(status, answer)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            try:
                body: Any = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body = None
            status, answer = fulcio.handle("POST", self.path, body)
            self.send_json(status, answer)

    return FulcioHandler
