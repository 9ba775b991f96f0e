"""sign_dsse: authorize, build the Statement, sign its PAE, audit, answer (spec §3.2, §5.5)."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stellaops_signer.domain.audit import AuditRecord, iso_time
from stellaops_signer.domain.authorization import SIGN_SCOPE, authorize
from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, pae
from stellaops_signer.domain.errors import InvalidRequest, ReleaseUntrusted, SignerError
from stellaops_signer.domain.jcs import canonicalize
from stellaops_signer.domain.predicates import PredicateCatalogue
from stellaops_signer.domain.statement import SignRequest, Statement
from stellaops_signer.observability import logger
from stellaops_signer.ports import AuditLog, Clock, KeySigner
from stellaops_signer.usecases.meta import RequestMeta

if TYPE_CHECKING:
    from stellaops_signer.domain.release import TrustedKey
    from stellaops_signer.usecases.verify_release import ReleaseVerifier

__all__ = ["RequestMeta", "SignDsse", "SignResult", "keys_document"]


@dataclass(frozen=True, slots=True)
class SignResult:
    body: dict[str, Any]
    headers: dict[str, str]


class SignDsse:
    """The signing use case; every outcome leaves one audit record, and a bundle leaves only
    after its record is stored."""

    def __init__(
        self,
        *,
        signer: KeySigner,
        audit: AuditLog,
        catalogue: PredicateCatalogue,
        clock: Clock,
        releases: ReleaseVerifier,
        default_mode: str = "kms",
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._releases = releases
        self._signer = signer
        self._audit = audit
        self._catalogue = catalogue
        self._clock = clock
        self._default_mode = default_mode
        self._new_id = new_id

    def __call__(
        self, principal: Principal, request: Callable[[], SignRequest], meta: RequestMeta
    ) -> SignResult:
        """Sign a request; ``request`` parses lazily so that a malformed body is audited too.

        Raises the SignerError of the first rule broken (after auditing the denial).
        """
        audit_id = self._new_id()
        parsed: SignRequest | None = None
        try:
            authorize(principal, (SIGN_SCOPE,), meta.tenant_header)
            parsed = request()
            statement = Statement.build(parsed, self._catalogue)
            mode = parsed.options.signingMode or self._default_mode
            if mode != "kms":
                raise InvalidRequest("keyless signing is not enabled on this installation")
            # §5.3: only for a genuine scanner release, decided before any signature exists.
            release = self._releases.verify(parsed.scannerImageDigest)
            if not release.trusted:
                raise ReleaseUntrusted(f"scanner {parsed.scannerImageDigest}: {release.reason}")
            envelope = self._sign(statement)
            bundle = {
                "dsse": envelope.to_json(),
                "mode": mode,
                "signingIdentity": {
                    "keyId": self._signer.key_ref,
                    "algorithm": "ECDSA_P256_SHA256",
                    "publicKeyPem": self._signer.public_key_pem,
                },
            }
            bundle_sha256 = hashlib.sha256(canonicalize(bundle)).hexdigest()
            self._audit.record(
                self._record(
                    audit_id,
                    principal,
                    parsed,
                    meta,
                    "allow",
                    key_id=self._signer.key_ref,
                    mode=mode,
                    bundle_sha256=bundle_sha256,
                )
            )
        except SignerError as error:
            self._record_denial(audit_id, principal, parsed, meta, error)
            raise
        return SignResult(
            body={"bundle": bundle, "auditId": audit_id, "bundleSha256": bundle_sha256},
            headers={},
        )

    def _sign(self, statement: Statement) -> Envelope:
        signature = self._signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, statement.payload))
        return Envelope(IN_TOTO_PAYLOAD_TYPE, statement.payload, (Signature(self._signer.keyid, signature),))

    def _record(
        self,
        audit_id: str,
        principal: Principal,
        request: SignRequest | None,
        meta: RequestMeta,
        decision: str,
        **fields: Any,
    ) -> AuditRecord:
        extra: dict[str, Any] = {}
        if request is not None:
            extra = {
                "poe_sha256": hashlib.sha256(request.poe.value.encode("utf-8")).hexdigest(),
                "scanner_digest": request.scannerImageDigest,
                "predicate_type": request.predicateType,
                "subject_digests": tuple(
                    f"{alg}:{value}" for s in request.subject for alg, value in sorted(s.digest.items())
                )[:64],
            }
        return AuditRecord(
            audit_id=audit_id,
            time=iso_time(self._clock.now()),
            route=meta.route,
            decision=decision,  # type: ignore[arg-type]
            correlation_id=meta.correlation_id,
            latency_ms=int((time.perf_counter() - meta.started) * 1000),
            tenant=principal.tenant,
            installation=principal.installation,
            subject=principal.subject,
            client_id=principal.client_id,
            binding=principal.binding,
            **extra,
            **fields,
        )

    def _record_denial(
        self,
        audit_id: str,
        principal: Principal,
        request: SignRequest | None,
        meta: RequestMeta,
        error: SignerError,
    ) -> None:
        try:
            self._audit.record(
                self._record(audit_id, principal, request, meta, "deny", error_code=error.code)
            )
        except SignerError:
            logger.warning("denial not audited", extra={"code": error.code, "auditId": audit_id})


def keys_document(signer: KeySigner, release_keys: Sequence[TrustedKey] = ()) -> dict[str, Any]:
    """Verification material for offline verifiers (spec §3.5)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    public_key: Any = load_pem_public_key(signer.public_key_pem.encode("ascii"))
    numbers = public_key.public_numbers()

    def coordinate(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode("ascii")

    return {
        "keys": [
            {
                "keyid": signer.keyid,
                "keyArn": signer.key_ref,
                "algorithm": "ECDSA_P256_SHA256",
                "publicKeyPem": signer.public_key_pem,
                "jwk": {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": coordinate(numbers.x),
                    "y": coordinate(numbers.y),
                    "kid": signer.keyid,
                    "alg": "ES256",
                    "use": "sig",
                },
            }
        ],
        "keyless": {"enabled": False, "certificateAuthorities": []},
        "releaseKeys": [
            {
                "keyid": key.keyid,
                "algorithm": "ECDSA_P256_SHA256",
                "publicKeyPem": key.key.public_bytes(
                    Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
                ).decode(),
            }
            for key in release_keys
        ],
    }
