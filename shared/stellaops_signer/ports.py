"""The small interfaces the use cases need; adapters implement them (boto3, HTTP, in-memory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: importing the ports costs nothing at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from stellaops_signer.domain.audit import AuditRecord
    from stellaops_signer.domain.jose import JsonObject
    from stellaops_signer.domain.quota import Plan, Reservation
    from stellaops_signer.domain.release import CandidateSignature
    from stellaops_signer.domain.signing import SignedBy
    from stellaops_signer.domain.tokens import KeySet


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


#: A fresh unique id (audit records): ``adapters.ids.random_id`` in Lambda, a counter in a test.
NewId = Callable[[], str]


class KeySigner(Protocol):
    """Signs with one asymmetric key; the signature is checked locally before it is returned."""

    @property
    def keyid(self) -> str:
        """Stable DSSE ``keyid``: base64url SHA-256 of the DER SubjectPublicKeyInfo."""
        ...

    @property
    def key_ref(self) -> str:
        """Where the key lives (a KMS key ARN)."""
        ...

    @property
    def public_key_pem(self) -> str: ...

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA signature over SHA-256(message); raises SigningUnavailable."""
        ...


class EnvelopeSigner(Protocol):
    """Signs a DSSE PAE in one mode (``kms`` or ``keyless``); the signature is verified locally first."""

    @property
    def mode(self) -> str: ...

    @property
    def keyid_hint(self) -> str:
        """A keyid of the length this signer's envelopes carry (the size rule needs it before signing)."""
        ...

    def sign(self, message: bytes) -> SignedBy:
        """Raises SigningUnavailable."""
        ...


class Timestamper(Protocol):
    def timestamp(self, signature: bytes) -> bytes:
        """The DER RFC 3161 TimeStampResp over SHA-256(signature), verified; raises SigningUnavailable."""
        ...


class AuditLog(Protocol):
    def record(self, record: AuditRecord) -> None:
        """Store the record durably; raises AuditUnavailable."""
        ...


class SigningCommit(Protocol):
    def signed(self, record: AuditRecord, reservation: Reservation) -> None:
        """Store a signing's ``allow`` record and free its lease (one write where the store allows);
        raises AuditUnavailable with the lease still held."""
        ...


class ReplayStore(Protocol):
    """Remembers single-use values (DPoP ``jti``) across every instance."""

    def remember(self, key: str, expires_at: int) -> None:
        """Record ``key`` once; raises InvalidDpopProof if it was recorded before (or cannot be)."""
        ...


class Cache(Protocol):
    """JSON values with a time to live; a failure reads as a miss."""

    def get(self, key: str) -> JsonObject | None: ...

    def put(self, key: str, value: JsonObject, ttl_seconds: int) -> None: ...


class SignatureSource(Protocol):
    """Where cosign signatures of an image digest are found (an OCI registry)."""

    def collect(self, repository: str, digest: str) -> list[CandidateSignature]:
        """Raises ReleaseUnverifiable when the registry cannot answer."""
        ...


class QuotaStore(Protocol):
    def reserve(self, license_id: str, plan: Plan) -> Reservation:
        """Raises PlanThrottled or QuotaExhausted (with Retry-After), SigningUnavailable."""
        ...

    def claim(self, reservation: Reservation) -> None:
        """Use a reservation handed in by a pipeline step for one signing; raises InvalidRequest if it
        was used, given back or has lapsed (and SigningUnavailable)."""
        ...

    def release(self, reservation: Reservation, *, refund: bool) -> bool:
        """Close the reservation (with ``refund``, give its units back); only the first call changes
        anything. True when this call closed it."""
        ...

    def usage(self, license_id: str, plan: Plan) -> dict[str, int]: ...


class Idempotency(Protocol):
    def run(
        self,
        scope: str,
        key: str,
        body_sha256: str,
        compute: Callable[[], JsonObject],
        *,
        answer_bytes: int,
        lambda_context: LambdaContext | None = None,
    ) -> tuple[JsonObject, bool]:
        """(the first answer for ``key`` within ``scope``, whether this is a replay of it); raises
        IdempotencyConflict for another body or a running first, SigningUnavailable when the store
        cannot be written (known before ``compute`` runs)."""
        ...


class KeySetSource(Protocol):
    """An issuer's JWKS, refreshed when a token names a key it does not hold yet."""

    def key_set(self, kid: str | None) -> KeySet:
        """Keys to verify a token whose header names ``kid``; raises InvalidToken if unavailable."""
        ...


__all__ = [
    "AuditLog",
    "Cache",
    "Clock",
    "EnvelopeSigner",
    "Idempotency",
    "KeySetSource",
    "KeySigner",
    "NewId",
    "QuotaStore",
    "ReplayStore",
    "SignatureSource",
    "SigningCommit",
    "Timestamper",
]
