"""The audit record of one decision (spec §5.7)."""

from __future__ import annotations

import math
import time
from typing import Literal, NamedTuple

#: ``replay``: an Idempotency-Key retry answered with the first answer, which ``replay_of`` names.
Decision = Literal["allow", "deny", "replay"]


class AuditRecord(NamedTuple):
    """What was decided, for whom, about what. Never a token, a proof, a PoE or a certificate.

    Immutable, as a frozen dataclass would be, and made in half its time (one of these per request,
    of 23 fields: decision 0017)."""

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
    subject_digests: tuple[str, ...] = ()
    mode: str = ""
    key_id: str = ""
    certificate_serial: str = ""
    bundle_sha256: str = ""
    replay_of: str = ""

    def as_item(self) -> dict[str, object]:
        """The non-empty fields, for storage."""
        item: dict[str, object] = {}
        for name, value in zip(self._fields, self, strict=True):
            if value != "" and value != ():
                item[name] = list(value) if isinstance(value, tuple) else value
        return item


def iso_time(epoch: float) -> str:
    """RFC 3339 UTC time with milliseconds, as audit records carry it: what
    ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")`` gives (``Z`` for
    ``+00:00``), the microseconds rounded half-even as it rounds them, the text of a second made
    once per second."""
    global _second
    fraction, whole = math.modf(epoch)
    micros = round(fraction * 1e6)
    second = int(whole) + micros // 1_000_000
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micros % 1_000_000 // 1000:03d}Z"


_second: tuple[int, str] = (-1, "")


__all__ = ["AuditRecord", "Decision", "iso_time"]
