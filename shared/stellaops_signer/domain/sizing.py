"""Will the answer fit what carries it? (spec §3.2 size rule) — decided before anything is reserved
or signed, from the Statement's exact size, so that nothing is ever signed that cannot be delivered.

The envelope carries the payload base64-encoded; a Sigstore bundle carries the same envelope a
second time. Everything else in an answer (keys, a certificate chain, timestamps, the policy
block, headers, the proxy integration's JSON escaping) is bounded by ``ANSWER_OVERHEAD_BYTES``.
"""

from __future__ import annotations

import functools
import json

from stellaops_signer.domain.errors import ArtifactTooLarge

#: A Lambda synchronous response is at most 6 MB (6,291,456 bytes), headers and JSON included.
LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024
#: What an answer holds besides its envelope(s), with room to spare: a P-256 PEM and JWK (~0.3 KB),
#: a Fulcio chain (~3 KB), RFC 3161 responses (~4 KB each), policy, ids, headers and escaping.
ANSWER_OVERHEAD_BYTES = 48 * 1024
#: A DER ECDSA P-256 signature is at most 72 bytes: 96 characters of base64.
_MAX_SIGNATURE_B64 = 96


def base64_length(size: int) -> int:
    """Characters of padded base64 for ``size`` bytes."""
    return 4 * ((size + 2) // 3)


def envelope_bytes(payload_type: str, payload_size: int, keyid: str) -> int:
    """An upper bound, exact but for the signature's length, of the DSSE envelope's JSON."""
    return _skeleton_bytes(payload_type, keyid) + base64_length(payload_size)


@functools.lru_cache(maxsize=64)  # a container signs with a few keys, one payload type
def _skeleton_bytes(payload_type: str, keyid: str) -> int:
    """The envelope's JSON but for its payload's base64."""
    skeleton = {
        "payloadType": payload_type,
        "payload": "",
        "signatures": [{"keyid": keyid, "sig": "A" * _MAX_SIGNATURE_B64}],
    }
    return len(json.dumps(skeleton, separators=(",", ":")))


def answer_bytes(envelope: int, *, sigstore: bool) -> int:
    """An upper bound of the whole answer: the envelope once, twice with a Sigstore bundle."""
    return envelope * (2 if sigstore else 1) + ANSWER_OVERHEAD_BYTES


def check_fits(envelope: int, answer: int, *, carrier_limit: int | None, max_attestation: int) -> None:
    """Raise ArtifactTooLarge naming the limit and the size when the envelope exceeds
    ``MaxAttestationBytes`` (0: no cap) or the answer its carrier (None: results travel by reference)."""
    if max_attestation and envelope > max_attestation:
        raise ArtifactTooLarge(
            f"the envelope would be about {envelope} bytes; MaxAttestationBytes allows {max_attestation}"
        )
    if carrier_limit is not None and answer > carrier_limit:
        raise ArtifactTooLarge(
            f"the answer would be about {answer} bytes; a Lambda response carries at most "
            f"{carrier_limit} bytes (6 MB)"
        )


__all__ = [
    "ANSWER_OVERHEAD_BYTES",
    "LAMBDA_RESPONSE_BYTES",
    "answer_bytes",
    "base64_length",
    "check_fits",
    "envelope_bytes",
]
