"""sign_dsse: authorize, build the Statement, sign its PAE, audit, answer (spec §3.2, §5.5)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from stellaops_signer.domain.audit import AuditRecord, Decision, iso_time
from stellaops_signer.domain.authorization import SIGN_SCOPE, authorize
from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.bundles import answer_body, bundle_digest, signer_bundle, sigstore_bundle
from stellaops_signer.domain.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, pae
from stellaops_signer.domain.entitlement import Entitlement, poe_identity_of
from stellaops_signer.domain.errors import (
    ArtifactTooLarge,
    InvalidRequest,
    ReleaseUntrusted,
    SignerError,
    on_refusal,
)
from stellaops_signer.domain.predicates import PredicateCatalogue
from stellaops_signer.domain.quota import Reservation, open_reservation, policy_block, rate_limit_headers
from stellaops_signer.domain.signing import PublishedKey
from stellaops_signer.domain.sizing import answer_bytes, check_fits, envelope_bytes
from stellaops_signer.domain.statement import SignRequest, Statement
from stellaops_signer.observability import MetricUnit, count, count_key_usage, logger
from stellaops_signer.ports import (
    AuditLog,
    Clock,
    EnvelopeSigner,
    Idempotency,
    NewId,
    QuotaStore,
    SigningCommit,
    Timestamper,
)
from stellaops_signer.usecases.meta import RequestMeta

if TYPE_CHECKING:
    from typing import TypedDict, Unpack

    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from stellaops_signer.domain.jose import JsonObject, JsonValue
    from stellaops_signer.domain.release import TrustedKey
    from stellaops_signer.usecases.entitlement import EntitlementChecker
    from stellaops_signer.usecases.verify_release import ReleaseVerifier

    class _Known(TypedDict, total=False):
        """What an audit record says of the request, once it is known."""

        license_id: str
        plan: str
        poe_sha256: str
        scanner_digest: str
        predicate_type: str
        subject_digests: tuple[str, ...]

    class _Outcome(TypedDict, total=False):
        """What an audit record says of the outcome."""

        error_code: str
        mode: str
        key_id: str
        certificate_serial: str
        bundle_sha256: str
        replay_of: str


__all__ = ["RequestMeta", "SignDsse", "SignResult", "keys_document"]


# Not frozen: made on every request's path and used at once (a frozen init costs 5x; decision 0017).
@dataclass(slots=True)
class SignResult:
    body: JsonObject
    headers: dict[str, str]


@dataclass(slots=True)
class _Attempt:
    """What one request got to before it succeeded or was refused: for its audit record, and so
    that whatever it reserved is given back."""

    audit_id: str
    parsed: SignRequest | None = None
    entitlement: Entitlement | None = None
    #: The reservation this request took itself (given back on any refusal).
    own: Reservation | None = None
    #: The reservation a pipeline step took (its compensation gives it back).
    handed: Reservation | None = None


class SignDsse:
    """The signing use case (spec §1's five proofs, then the signature).

    Every outcome leaves one audit record, and a bundle leaves only after its record is
    stored. Whatever a refused request reserved is given back.
    """

    def __init__(
        self,
        *,
        signers: Callable[[str, str], EnvelopeSigner | None],
        audit: AuditLog,
        catalogue: PredicateCatalogue,
        clock: Clock,
        releases: ReleaseVerifier,
        entitlements: EntitlementChecker,
        quotas: QuotaStore,
        commit: SigningCommit,
        idempotency: Callable[[], Idempotency] | None = None,
        reservation_key: Callable[[], bytes] | None = None,
        timestamper: Timestamper | None = None,
        default_mode: str = "kms",
        max_attestation_bytes: int = 0,
        new_id: NewId,
    ) -> None:
        self._signers = signers
        self._timestamper = timestamper
        self._audit = audit
        self._catalogue = catalogue
        self._clock = clock
        self._releases = releases
        self._entitlements = entitlements
        self._quotas = quotas
        self._commit = commit
        self._idempotency = idempotency
        self._reservation_key = reservation_key
        self._default_mode = default_mode
        self._max_attestation = max_attestation_bytes
        self._new_id = new_id

    def __call__(
        self,
        principal: Principal,
        request: Callable[[], SignRequest],
        meta: RequestMeta,
        reservation: Mapping[str, JsonValue] | None = None,
    ) -> SignResult:
        """Sign a request; ``request`` parses lazily so that a malformed body is audited too.

        ``reservation`` is a sealed one a pipeline step took (check_quota): authentic, for this
        tenant and licence, used once; a failure leaves its refund to the pipeline's ReleaseQuota
        step. Otherwise the request reserves, and gives back, its own. With an Idempotency-Key,
        a retry with the same body gets the first answer again, uncharged, once it passed the
        same gates (spec §5.4). Raises the SignerError of the first rule broken, after auditing.
        """
        attempt = _Attempt(self._new_id())

        def give_back_and_audit(refusal: SignerError) -> None:
            if attempt.own is not None:
                self._quotas.release(attempt.own, refund=True)
            self._record_denial(principal, meta, attempt, refusal)

        with on_refusal(give_back_and_audit):
            return self._run(principal, request, meta, reservation, attempt)

    def _run(
        self,
        principal: Principal,
        request: Callable[[], SignRequest],
        meta: RequestMeta,
        sealed: Mapping[str, JsonValue] | None,
        attempt: _Attempt,
    ) -> SignResult:
        # 1. What they may do: scope, and the tenant header.
        authorize(principal, (SIGN_SCOPE,), meta.tenant_header)
        # 2. What they ask: the request, its Statement, and an answer that can be delivered (§3.2).
        attempt.parsed = parsed = request()
        statement = Statement.build(parsed, self._catalogue)
        mode = parsed.options.signingMode or self._default_mode
        signer = self._signers(mode, principal.tenant)  # the tenant's key, in KMS mode
        if signer is None:
            raise InvalidRequest(f"{mode} signing is not enabled on this installation")
        envelope_size = envelope_bytes(IN_TOTO_PAYLOAD_TYPE, len(statement.payload), signer.keyid_hint)
        answer_size = answer_bytes(envelope_size, sigstore=parsed.options.returnBundle == "sigstore")
        check_fits(
            envelope_size,
            answer_size,
            carrier_limit=meta.carrier_limit,
            max_attestation=self._max_attestation,
        )
        # 3. That they are entitled (revocation included) and the request fits the plan.
        attempt.entitlement = entitlement = self._entitlements.check(parsed.poe.value, principal)
        if meta.body_bytes > entitlement.plan.maxArtifactBytes:
            limit = entitlement.plan.maxArtifactBytes
            raise ArtifactTooLarge(f"the request is {meta.body_bytes} bytes; the plan allows {limit}")
        if sealed is not None:
            attempt.handed = self._open(sealed, principal, entitlement)
        # 4. A retry of an Idempotency-Key gets the first answer, now that it passed every gate.
        if meta.idempotency_key and self._idempotency is not None:
            if not 1 <= len(meta.idempotency_key) <= 255:
                raise InvalidRequest("Idempotency-Key must be 1 to 255 characters")
            answer, replayed = self._idempotency().run(
                principal.tenant,
                meta.idempotency_key,
                meta.body_sha256,
                lambda: _stored(self._sign(principal, statement, parsed, entitlement, signer, meta, attempt)),
                answer_bytes=answer_size,
                lambda_context=meta.lambda_context,
            )
            result = SignResult(body=answer["body"], headers=answer["headers"])
            if replayed:
                if attempt.handed is not None:  # the pipeline's units go back: a replay is not charged
                    self._quotas.release(attempt.handed, refund=True)
                self._audit.record(
                    self._record(
                        principal, meta, attempt, "replay", replay_of=str(result.body.get("auditId", ""))
                    )
                )
                return SignResult(body=result.body, headers={**result.headers, "Idempotent-Replayed": "true"})
            return result
        return self._sign(principal, statement, parsed, entitlement, signer, meta, attempt)

    def _open(
        self, sealed: Mapping[str, JsonValue], principal: Principal, entitlement: Entitlement
    ) -> Reservation:
        """A pipeline's reservation: authentic, this tenant's and this licence's (spec §5.2)."""
        if self._reservation_key is None:
            raise InvalidRequest("this entry point takes no reservation")
        reservation = open_reservation(sealed, principal.tenant, self._reservation_key())
        if reservation.license_id != entitlement.license_id:
            raise InvalidRequest("the reservation was taken for another licence")
        return reservation

    def _sign(
        self,
        principal: Principal,
        statement: Statement,
        parsed: SignRequest,
        entitlement: Entitlement,
        signer: EnvelopeSigner,
        meta: RequestMeta,
        attempt: _Attempt,
    ) -> SignResult:
        # 5. That the plan allows it now: a reservation of one's own, or the pipeline's, used once.
        if attempt.handed is not None:
            self._quotas.claim(attempt.handed)
            held = attempt.handed
        else:
            held = attempt.own = self._quotas.reserve(entitlement.license_id, entitlement.plan)
        # 6. That the scanner is a genuine release the licence covers.
        release = self._releases.verify(parsed.scannerImageDigest)
        if not release.trusted:
            raise ReleaseUntrusted(f"scanner {parsed.scannerImageDigest}: {release.reason}")
        entitlement.covers_release(release.release_year)
        # 7. The signature over the PAE, verified by its signer before it is returned.
        signed = signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, statement.payload))
        envelope = Envelope(
            IN_TOTO_PAYLOAD_TYPE, statement.payload, (Signature(signed.keyid, signed.signature),)
        )
        # 8. A trusted time for the signature, when a timestamp authority is configured.
        timestamps = (self._timestamper.timestamp(signed.signature),) if self._timestamper else ()
        bundle = signer_bundle(envelope, signed, signer.mode, timestamps)
        digest = bundle_digest(bundle)
        # 9. The audit record, before anything leaves, and the lease freed: one write.
        record = self._record(
            principal,
            meta,
            attempt,
            "allow",
            key_id=signed.key_ref,
            certificate_serial=signed.certificate_serial,
            mode=signer.mode,
            bundle_sha256=digest,
        )
        self._commit.signed(record, held)
        attempt.own = None  # signed: nothing to give back any more
        count("SigningLatency", (time.perf_counter() - meta.started) * 1000, MetricUnit.Milliseconds)
        count_key_usage(signer.mode, signed.key_ref or "keyless")
        # 10. The answer.
        body = answer_body(
            bundle,
            sigstore=sigstore_bundle(envelope, signed, timestamps)
            if parsed.options.returnBundle == "sigstore"
            else None,
            policy=policy_block(entitlement.plan_name, entitlement.license_id, entitlement.plan, held),
            audit_id=attempt.audit_id,
            bundle_sha256=digest,
        )
        return SignResult(
            body, rate_limit_headers(entitlement.plan, held.qps_used, held.daily_used, self._clock.now())
        )

    def _record(
        self,
        principal: Principal,
        meta: RequestMeta,
        attempt: _Attempt,
        decision: Decision,
        **fields: Unpack[_Outcome],
    ) -> AuditRecord:
        extra: _Known = {}
        entitlement, request = attempt.entitlement, attempt.parsed
        if entitlement is not None:
            extra.update(
                {
                    "license_id": entitlement.license_id,
                    "plan": entitlement.plan_name,
                    "poe_sha256": entitlement.poe_sha256,
                }
            )
        if request is not None:
            if "poe_sha256" not in extra:  # a PoE refused before its identity was known
                extra["poe_sha256"] = poe_identity_of(request.poe.value)
            digests = [f"{alg}:{value}" for s in request.subject for alg, value in sorted(s.digest.items())]
            extra |= {
                "scanner_digest": request.scannerImageDigest,
                "predicate_type": request.predicateType,
                "subject_digests": tuple(digests[:64]),
            }
        return AuditRecord(
            audit_id=attempt.audit_id,
            time=iso_time(self._clock.now()),
            route=meta.route,
            decision=decision,
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
        self, principal: Principal, meta: RequestMeta, attempt: _Attempt, error: SignerError
    ) -> None:
        try:
            self._audit.record(self._record(principal, meta, attempt, "deny", error_code=error.code))
        except SignerError:
            logger.warning("denial not audited", extra={"code": error.code, "auditId": attempt.audit_id})


def _stored(result: SignResult) -> JsonObject:
    """What the idempotency store keeps for the retries."""
    return {"body": result.body, "headers": result.headers}


def keys_document(
    keys: Sequence[PublishedKey],
    release_keys: Sequence[TrustedKey] = (),
    *,
    keyless_authorities: Sequence[str] = (),
    timestamp_authorities: Sequence[str] = (),
) -> JsonObject:
    """Verification material for offline verifiers (spec §3.5): every KMS key the installation has
    used (active and retired, with its window), the keyless CA's roots and intermediates (PEM), the
    timestamp authority's chain (PEM) and the release keys."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    def coordinate(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode("ascii")

    def rfc3339(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def entry(key: PublishedKey) -> JsonObject:
        public_key = cast("EllipticCurvePublicKey", load_pem_public_key(key.public_key_pem.encode("ascii")))
        numbers = public_key.public_numbers()
        published: JsonObject = {
            "keyid": key.keyid,
            "keyArn": key.key_ref,
            "algorithm": "ECDSA_P256_SHA256",
            "status": key.status,
            "notBefore": rfc3339(key.not_before),
        }
        if key.not_after is not None:
            published["notAfter"] = rfc3339(key.not_after)
        published["publicKeyPem"] = key.public_key_pem
        published["jwk"] = {
            "kty": "EC",
            "crv": "P-256",
            "x": coordinate(numbers.x),
            "y": coordinate(numbers.y),
            "kid": key.keyid,
            "alg": "ES256",
            "use": "sig",
        }
        return published

    return {
        "keys": [entry(key) for key in keys],
        "keyless": {
            "enabled": bool(keyless_authorities),
            "certificateAuthorities": list(keyless_authorities),
        },
        "timestampAuthorities": [{"certificates": list(timestamp_authorities)}]
        if timestamp_authorities
        else [],
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
