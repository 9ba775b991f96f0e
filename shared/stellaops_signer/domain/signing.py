"""What a signer hands back for one envelope, in either mode (spec §3.2 ``signingIdentity``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SignedBy:
    """One DSSE signature and who made it: the answer's ``signingIdentity`` and ``certificateChain``,
    and what the audit record names (a KMS key, or a certificate serial)."""

    keyid: str
    #: DER ECDSA P-256 over SHA-256 of the PAE, verified locally before it was returned.
    signature: bytes
    identity: dict[str, str]
    certificate_chain: tuple[str, ...] = field(default_factory=tuple)
    key_ref: str = ""
    certificate_serial: str = ""


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A KMS key as ``/keys`` publishes it (spec §3.5): what verifies its signatures, and when."""

    keyid: str
    key_ref: str
    public_key_pem: str
    #: ``active`` (signs) or ``retired`` (never signs again; verifies inside its window).
    status: str
    not_before: datetime
    not_after: datetime | None = None


__all__ = ["PublishedKey", "SignedBy"]
