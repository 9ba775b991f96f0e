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
from stellaops_signer.domain.entitlement import Entitlement, poe_digest
from stellaops_signer.domain.errors import (
    ArtifactTooLarge,
    InternalError,
    InvalidRequest,
    ReleaseUntrusted,
    SignerError,
)
from stellaops_signer.domain.jcs import canonicalize
from stellaops_signer.domain.predicates import PredicateCatalogue
from stellaops_signer.domain.quota import Reservation, policy_block, rate_limit_headers
from stellaops_signer.domain.statement import SignRequest, Statement
from stellaops_signer.observability import MetricUnit, count, logger
from stellaops_signer.ports import AuditLog, Clock, Idempotency, KeySigner, QuotaStore
from stellaops_signer.usecases.meta import RequestMeta

if TYPE_CHECKING:
    from stellaops_signer.domain.release import TrustedKey
    from stellaops_signer.usecases.entitlement import EntitlementChecker
    from stellaops_signer.usecases.verify_release import ReleaseVerifier

__all__ = ["RequestMeta", "SignDsse", "SignResult", "keys_document"]


@dataclass(frozen=True, slots=True)
class SignResult:
    body: dict[str, Any]
    headers: dict[str, str]


class SignDsse:
    """The signing use case (spec §1's five proofs, then the signature).

    Every outcome leaves one audit record, and a bundle leaves only after its record is
    stored. Whatever a refused request reserved is given back.
    """

    def __init__(
        self,
        *,
        signer: KeySigner,
        audit: AuditLog,
        catalogue: PredicateCatalogue,
        clock: Clock,
        releases: ReleaseVerifier,
        entitlements: EntitlementChecker,
        quotas: QuotaStore,
        idempotency: Callable[[], Idempotency] | None = None,
        default_mode: str = "kms",
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._signer = signer
        self._audit = audit
        self._catalogue = catalogue
        self._clock = clock
        self._releases = releases
        self._entitlements = entitlements
        self._quotas = quotas
        self._idempotency = idempotency
        self._default_mode = default_mode
        self._new_id = new_id

    def __call__(
        self,
        principal: Principal,
        request: Callable[[], SignRequest],
        meta: RequestMeta,
        reservation: Reservation | None = None,
    ) -> SignResult:
        """Sign a request; ``request`` parses lazily so that a malformed body is audited too.

        ``reservation`` is one a pipeline step already took (check_quota): this call frees its
        lease after signing, and leaves a failure's refund to the pipeline's ReleaseQuota step;
        otherwise the request reserves, and gives back, its own. With an Idempotency-Key a
        retry with the same body gets the first answer again, uncharged (spec §5.4). Raises
        the SignerError of the first rule broken, after auditing the denial.
        """
        if meta.idempotency_key and self._idempotency is not None:
            if not 1 <= len(meta.idempotency_key) <= 255:
                raise InvalidRequest("Idempotency-Key must be 1 to 255 characters")
            key = f"{principal.tenant}#{meta.idempotency_key}"

            computed: list[bool] = []

            def first() -> dict[str, Any]:
                computed.append(True)
                result = self._sign_once(principal, request, meta, reservation)
                return {"body": result.body, "headers": result.headers}

            stored = self._idempotency().run(key, meta.body_sha256, first, meta.lambda_context)
            if not computed and reservation is not None:  # a replay: the pipeline's units go back
                self._quotas.release(reservation, refund=True)
            return SignResult(body=stored["body"], headers=stored["headers"])
        return self._sign_once(principal, request, meta, reservation)

    def _sign_once(
        self,
        principal: Principal,
        request: Callable[[], SignRequest],
        meta: RequestMeta,
        reservation: Reservation | None,
    ) -> SignResult:
        audit_id = self._new_id()
        parsed: SignRequest | None = None
        entitlement: Entitlement | None = None
        held = reservation
        try:
            authorize(principal, (SIGN_SCOPE,), meta.tenant_header)  # what they may do
            parsed = request()
            statement = Statement.build(parsed, self._catalogue)
            mode = parsed.options.signingMode or self._default_mode
            if mode != "kms":
                raise InvalidRequest("keyless signing is not enabled on this installation")
            entitlement = self._entitlements.check(parsed.poe.value, principal)  # that they are entitled
            if meta.body_bytes > entitlement.plan.maxArtifactBytes:
                limit = entitlement.plan.maxArtifactBytes
                raise ArtifactTooLarge(f"the request is {meta.body_bytes} bytes; the plan allows {limit}")
            if held is None:  # that the plan allows it now
                held = self._quotas.reserve(entitlement.license_id, entitlement.plan)
            release = self._releases.verify(parsed.scannerImageDigest)  # that the scanner is genuine
            if not release.trusted:
                raise ReleaseUntrusted(f"scanner {parsed.scannerImageDigest}: {release.reason}")
            entitlement.covers_release(release.release_year)
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
                    entitlement,
                    key_id=self._signer.key_ref,
                    mode=mode,
                    bundle_sha256=bundle_sha256,
                )
            )
        except Exception as error:  # whatever failed, the units go back and the refusal is audited
            if held is not None and reservation is None:  # a pipeline's own compensation releases its
                self._quotas.release(held, refund=True)
            refusal = error if isinstance(error, SignerError) else InternalError("unexpected error")
            self._record_denial(audit_id, principal, parsed, meta, refusal, entitlement)
            raise
        self._quotas.release(held, refund=False)
        count("SigningLatency", (time.perf_counter() - meta.started) * 1000, MetricUnit.Milliseconds)
        count("KeyUsage.kms")
        body: dict[str, Any] = {"bundle": bundle}
        if parsed.options.returnBundle == "sigstore":
            body["sigstoreBundle"] = sigstore_bundle(envelope)
        body.update(
            policy=policy_block(entitlement.plan_name, entitlement.license_id, entitlement.plan, held),
            auditId=audit_id,
            bundleSha256=bundle_sha256,
        )
        return SignResult(body=body, headers=rate_limit_headers(entitlement.plan, held.qps_used))

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
        entitlement: Entitlement | None = None,
        **fields: Any,
    ) -> AuditRecord:
        extra: dict[str, Any] = {}
        if entitlement is not None:
            extra.update(license_id=entitlement.license_id, plan=entitlement.plan_name)
        if request is not None:
            extra |= {
                "poe_sha256": poe_digest(request.poe.value),
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
        entitlement: Entitlement | None = None,
    ) -> None:
        try:
            self._audit.record(
                self._record(audit_id, principal, request, meta, "deny", entitlement, error_code=error.code)
            )
        except SignerError:
            logger.warning("denial not audited", extra={"code": error.code, "auditId": audit_id})


SIGSTORE_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def sigstore_bundle(envelope: Envelope) -> dict[str, Any]:
    """A Sigstore bundle v0.3 around the same envelope (spec §5.5), KMS mode: the verifier finds
    the key by ``verificationMaterial.publicKey.hint`` (the keyid /keys publishes). No
    transparency-log entry: the Attestor logs the envelope to Rekor downstream."""
    document = envelope.to_json()
    return {
        "mediaType": SIGSTORE_BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": envelope.signatures[0].keyid},
            "tlogEntries": [],
            "timestampVerificationData": {"rfc3161Timestamps": []},
        },
        "dsseEnvelope": document,
    }


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
