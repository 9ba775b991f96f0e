"""What a signer hands back for one envelope, in either mode (spec §3.2 ``signingIdentity``)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
