"""Hand-assembled JOSE for tests: exact header and claims texts, duplicate members, ES256 over them.

Built with ``cryptography`` alone, so the Signer's own JOSE code never checks its own output.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def text(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def repeating(value: dict[str, Any], name: str, other: Any, *, first: bool = False) -> str:
    """The JSON text of ``value`` with a second ``name`` member holding ``other``, before or after the
    members of ``value`` (a first-wins parser reads one, a last-wins parser the other)."""
    extra = f"{json.dumps(name)}:{json.dumps(other)}"
    body = text(value)[1:-1]
    return "{" + (f"{extra},{body}" if first else f"{body},{extra}") + "}"


def es256(private_key: ec.EllipticCurvePrivateKey, header: str, claims: str) -> str:
    """A compact JWS signed with ES256 (RFC 7518 §3.4: R‖S) over exactly these header and claims texts."""
    signing_input = f"{b64url(header.encode())}.{b64url(claims.encode())}"
    r, s = decode_dss_signature(private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
