"""DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse, envelope.md and protocol.md)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``.

    Lengths are byte lengths in decimal ASCII (protocol.md, "Signature definition").
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed envelope; ``payload`` holds the exact bytes that were signed."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures
            ],
        }


__all__ = ["IN_TOTO_PAYLOAD_TYPE", "Envelope", "Signature", "pae"]
