"""The audit record of one decision (spec §5.7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

#: ``replay``: an Idempotency-Key retry answered with the first answer, which ``replay_of`` names.
Decision = Literal["allow", "deny", "replay"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What was decided, for whom, about what. Never a token, a proof, a PoE or a certificate."""

    audit_id: str
    time: str
    route: str
    decision: Decision
    correlation_id: str
    latency_ms: int
    error_code: str = ""
    tenant: str = ""
    installation: str = ""
    subject: str = ""
    client_id: str = ""
    binding: str = ""
    license_id: str = ""
    plan: str = ""
    poe_sha256: str = ""
    scanner_digest: str = ""
    predicate_type: str = ""
    subject_digests: tuple[str, ...] = field(default_factory=tuple)
    mode: str = ""
    key_id: str = ""
    certificate_serial: str = ""
    bundle_sha256: str = ""
    replay_of: str = ""

    def as_item(self) -> dict[str, object]:
        """The non-empty fields, for storage."""
        item: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value != "" and value != ():
                item[name] = list(value) if isinstance(value, tuple) else value
        return item


def iso_time(epoch: float) -> str:
    """RFC 3339 UTC time with milliseconds, as audit records carry it."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["AuditRecord", "Decision", "iso_time"]
