"""Keyless signing (spec §5.5): an ephemeral P-256 key certified by a Fulcio CA for the Signer's own
OIDC identity, which the Signer obtains from the Authority with the client-credentials grant.

The private key exists only in this process's memory: one per signing, or one per
``KeylessKeyReuseSeconds`` window (decision 0012). Fulcio's answer is trusted only after its chain
verifies against ``FulcioRootCertificates`` and its leaf holds our key (``domain/keyless.py``);
every signature is verified with the certificate's key before it leaves.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stellaops_signer.adapters.retrying import post_with_retries
from stellaops_signer.domain.errors import SigningUnavailable
from stellaops_signer.domain.jose import JsonObject, sha256_b64url, strict_json
from stellaops_signer.domain.keyless import CertifiedIdentity, verify_chain
from stellaops_signer.domain.signing import SignedBy
from stellaops_signer.domain.tokens import CLOCK_SKEW_SECONDS, CompactJws
from stellaops_signer.observability import logger
from stellaops_signer.ports import Clock

TIMEOUT = (3.05, 10.0)
MAX_ANSWER_BYTES = 256 * 1024
#: An identity token is renewed this long before it expires; a reused certificate likewise.
RENEW_BEFORE_SECONDS = 60


def _read(answer: requests.Response, what: str) -> bytes:
    body: bytes = answer.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
    if len(body) > MAX_ANSWER_BYTES:
        raise SigningUnavailable(f"the {what} answered more than allowed")
    return body


def _json_object(body: bytes, what: str) -> JsonObject:
    try:
        value = strict_json(body)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise SigningUnavailable(f"the {what} answered something other than a JSON object")
    return value


class ClientCredentialsIdentity:
    """The Signer's own OIDC identity token (RFC 6749 §4.4), cached until shortly before it expires.

    ``credentials`` gives (client id, client secret) — read from Secrets Manager on first use.
    The answer's ``id_token`` is the token, else its ``access_token``. Raises SigningUnavailable.
    """

    def __init__(
        self,
        url: str,
        credentials: Callable[[], tuple[str, str]],
        clock: Clock,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        self._credentials = credentials
        self._clock = clock
        self._http = session or requests.Session()
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None

    def token(self) -> str:
        with self._lock:
            now = self._clock.now()
            if self._cached is not None and self._cached[1] > now:
                return self._cached[0]
            token, expires_at = self._fetch(now)
            self._cached = (token, expires_at - RENEW_BEFORE_SECONDS)
            return token

    def _fetch(self, now: float) -> tuple[str, float]:
        client_id, secret = self._credentials()
        try:
            with self._http.post(
                self._url,
                data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
                headers={"Accept": "application/json"},
                timeout=TIMEOUT,
                stream=True,
                allow_redirects=False,
            ) as answer:
                status, body = answer.status_code, _read(answer, "identity token endpoint")
        except requests.RequestException as exc:
            raise SigningUnavailable("the Signer's identity token cannot be obtained") from exc
        if status != 200:
            raise SigningUnavailable(f"the identity token endpoint answered {status}")
        document = _json_object(body, "identity token endpoint")
        token = document.get("id_token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise SigningUnavailable("the identity token endpoint answered no token")
        lifetime = document.get("expires_in")
        expires_at = now + lifetime if type(lifetime) is int and lifetime > 0 else _expiry(token, now)
        return token, expires_at


def _claims(token: str) -> JsonObject:
    """The claims of our own identity token, unverified: Fulcio verifies it; we need its ``sub``."""
    try:
        claims = strict_json(CompactJws.parse(token, SigningUnavailable).payload)
    except (ValueError, RecursionError):
        raise SigningUnavailable("the identity token is not a JWT") from None
    if not isinstance(claims, dict):
        raise SigningUnavailable("the identity token is not a JWT")
    return claims


def _expiry(token: str, now: float) -> float:
    exp = _claims(token).get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp > now:
        return float(exp)
    return now + RENEW_BEFORE_SECONDS + 1


def _validation_time(chain: list[str], now: float) -> datetime:
    """Now, or the leaf's start when the CA's clock runs up to CLOCK_SKEW_SECONDS ahead of ours (a
    certificate is valid from the second it is issued; retries and skew must not refuse it)."""
    moment = datetime.fromtimestamp(now, UTC)
    try:
        starts = x509.load_pem_x509_certificate(chain[0].encode("ascii")).not_valid_before_utc
    except (ValueError, UnicodeError, IndexError):
        return moment  # verify_chain refuses it with the reason
    return starts if moment < starts <= datetime.fromtimestamp(now + CLOCK_SKEW_SECONDS, UTC) else moment


class FulcioClient:
    """Fulcio's ``POST /api/v2/signingCert`` (fulcio.proto ``CreateSigningCertificate``).

    5xx answers and timeouts are retried with backoff; 4xx are not (our request is wrong and
    would stay wrong). Whatever fails answers SigningUnavailable.
    """

    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = base_url.rstrip("/") + "/api/v2/signingCert"
        self._http = session or requests.Session()
        self._sleep = sleep

    def signing_certificate(self, token: str, public_key_pem: str, proof: bytes) -> list[str]:
        """The PEM chain (leaf first) Fulcio issues for ``public_key_pem``."""
        request: JsonObject = {
            "credentials": {"oidcIdentityToken": token},
            "publicKeyRequest": {
                "publicKey": {"algorithm": "ECDSA", "content": public_key_pem},
                "proofOfPossession": base64.b64encode(proof).decode("ascii"),
            },
        }
        status, body = post_with_retries(
            self._http, self._url, "the keyless CA", limit=MAX_ANSWER_BYTES, sleep=self._sleep, json=request
        )
        if status not in (200, 201):
            raise SigningUnavailable(f"the keyless CA refused the certificate request ({status})")
        return _chain(_json_object(body, "keyless CA"))


def _chain(answer: JsonObject) -> list[str]:
    for form in ("signedCertificateEmbeddedSct", "signedCertificateDetachedSct"):
        signed = answer.get(form)
        if isinstance(signed, dict):
            chain = signed.get("chain")
            certificates = chain.get("certificates") if isinstance(chain, dict) else None
            if (
                isinstance(certificates, list)
                and certificates
                and all(isinstance(c, str) for c in certificates)
            ):
                return certificates
    raise SigningUnavailable("the keyless CA answered no certificate chain")


@dataclass(frozen=True, slots=True)
class _CertifiedKey:
    key: ec.EllipticCurvePrivateKey
    keyid: str
    certified: CertifiedIdentity
    reuse_until: float


class KeylessSigner:
    """The ``EnvelopeSigner`` of keyless mode."""

    mode = "keyless"
    #: A stand-in of the length of every keyid this signer gives (base64url SHA-256), for sizing.
    keyid_hint = "A" * 43

    def __init__(
        self,
        *,
        fulcio: FulcioClient,
        identity: ClientCredentialsIdentity,
        trusted: tuple[x509.Certificate, ...],
        clock: Clock,
        reuse_seconds: int = 0,
    ) -> None:
        self._fulcio = fulcio
        self._identity = identity
        self._trusted = trusted
        self._clock = clock
        self._reuse = reuse_seconds
        self._lock = threading.Lock()
        self._current: _CertifiedKey | None = None
        #: Milliseconds of the last certification's phases (key, identity, ca), for the bench.
        self.last_timings: dict[str, float] = {}

    def sign(self, message: bytes) -> SignedBy:
        held = self._certified_key()
        signature = held.key.sign(message, ec.ECDSA(hashes.SHA256()))
        # verified with the certificate's key, not ours: what a verifier will use
        public_key = x509.load_pem_x509_certificate(held.certified.chain_pem[0].encode("ascii")).public_key()
        try:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SigningUnavailable("the keyless signature does not verify with its certificate") from None
        certified = held.certified
        return SignedBy(
            keyid=held.keyid,
            signature=signature,
            identity={
                "issuer": certified.issuer,
                "subject": certified.subject,
                "certExpiry": certified.not_after.isoformat().replace("+00:00", "Z"),
            },
            certificate_chain=certified.chain_pem,
            certificate_serial=certified.serial,
        )

    def _certified_key(self) -> _CertifiedKey:
        with self._lock:
            now = self._clock.now()
            current = self._current
            if current is not None and current.reuse_until > now:
                return current
            self._current = None
            fresh = self._certify(now)
            if self._reuse:
                self._current = fresh
            return fresh

    def _certify(self, now: float) -> _CertifiedKey:
        started = time.perf_counter()
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        generated = time.perf_counter()
        token = self._identity.token()
        subject = _claims(token).get("sub")
        if not isinstance(subject, str) or not subject:
            raise SigningUnavailable("the identity token names no subject")
        identified = time.perf_counter()
        proof = key.sign(subject.encode("utf-8"), ec.ECDSA(hashes.SHA256()))  # Fulcio's proof of possession
        pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        chain = self._fulcio.signing_certificate(token, pem, proof)
        certified = verify_chain(chain, self._trusted, spki, _validation_time(chain, self._clock.now()))
        done = time.perf_counter()
        self.last_timings = {
            "keyMs": (generated - started) * 1000,
            "identityMs": (identified - generated) * 1000,
            "caMs": (done - identified) * 1000,
        }
        logger.info("keyless certificate", extra={"serial": certified.serial, **self.last_timings})
        reuse_until = min(now + self._reuse, certified.not_after.timestamp() - RENEW_BEFORE_SECONDS)
        return _CertifiedKey(key, sha256_b64url(spki), certified, reuse_until)


__all__ = [
    "MAX_ANSWER_BYTES",
    "RENEW_BEFORE_SECONDS",
    "TIMEOUT",
    "ClientCredentialsIdentity",
    "FulcioClient",
    "KeylessSigner",
]
