"""DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse, envelope.md and protocol.md)."""

from __future__ import annotations

import binascii
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
            "payload": binascii.b2a_base64(self.payload, newline=False).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": binascii.b2a_base64(s.sig, newline=False).decode("ascii")}
                for s in self.signatures
            ],
        }


__all__ = ["IN_TOTO_PAYLOAD_TYPE", "Envelope", "Signature", "pae"]
