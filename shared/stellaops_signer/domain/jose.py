"""The JOSE subset the Signer accepts: public JWKs and JWS signatures for ES256, ES384,
EdDSA (Ed25519) and PS256, on ``cryptography`` alone.

RFC 7518 §3.4 (ECDSA: the signature is R‖S, each the curve's byte length), §3.5 (RSASSA-PSS
with SHA-256, MGF1 SHA-256, a 32-byte salt), §6 (JWK members); RFC 8037 §2–3 (OKP Ed25519).
Anything else — ``none``, HMAC, RS256, other curves, private members — is refused.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

#: algorithm → (kty, crv) a key must have to verify it.
KEY_REQUIREMENTS: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "EdDSA": ("OKP", "Ed25519"),
    "PS256": ("RSA", None),
}
#: crv → (curve, coordinate bytes, the ECDSA signature algorithm over its hash: one instance, reused).
_CURVES: dict[str, tuple[ec.EllipticCurve, int, ec.ECDSA]] = {
    "P-256": (ec.SECP256R1(), 32, ec.ECDSA(hashes.SHA256())),
    "P-384": (ec.SECP384R1(), 48, ec.ECDSA(hashes.SHA384())),
}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

#: A JSON value as ``json.loads`` (or ``strict_json``) gives it, of a shape still to be checked: the
#: package's one name for "really any" (everything else is typed).
JsonValue: TypeAlias = Any
#: A JSON object.
JsonObject: TypeAlias = dict[str, JsonValue]
#: The public keys a JWK can hold here (``PublicJwk.key``).
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | Ed25519PublicKey | rsa.RSAPublicKey


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2). (``binascii`` directly: what ``base64``'s wrappers call.)"""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE).decode("ascii")


def sha256_b64url(data: bytes) -> str:
    """base64url(SHA-256(data)): JWK thumbprints, ``ath``, ``x5t#S256``, DSSE keyids."""
    return b64url(hashlib.sha256(data).digest())


def b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2); raises ValueError."""
    if not isinstance(segment, str) or not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return binascii.a2b_base64(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4))


def _unique_members(pairs: list[tuple[str, JsonValue]]) -> JsonObject:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # RFC 7515 §4 / RFC 7519 §4: names MUST be unique; we do not pick one
        raise ValueError("duplicate member names")
    return obj


def _no_constant(name: str) -> JsonValue:
    raise ValueError(f"{name} is not JSON")  # NaN and ±Infinity would pass every comparison


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 is no NaN/Infinity literal, yet reads as Infinity
        raise ValueError(f"{literal} is beyond the range of a double")
    return value


#: One decoder, its scanner built once (``json.loads`` with hooks builds both on every call).
_STRICT = json.JSONDecoder(
    object_pairs_hook=_unique_members, parse_constant=_no_constant, parse_float=_finite_float
)


#: orjson's options wherever it writes JSON: what it would turn into JSON that the standard library
#: refuses (a dataclass, a datetime) goes to the standard library (or a ``default``) instead.
ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
#: The standard library's compact encoder, for what orjson does not take (an integer beyond 64 bits, a
#: key that is not a string). Its values are JSON documents the Signer parsed or built: no cycle
#: bookkeeping.
_COMPACT = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def compact_json(value: JsonValue) -> str:
    """Compact JSON (``json.dumps(value, separators=(",", ":"))``'s document) for API answers and EMF
    documents, written by orjson: about ten times the standard library's speed on an answer
    (decision 0020). Text beyond ASCII is written as UTF-8, not as ``\\u`` escapes."""
    try:
        return orjson.dumps(value, option=ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: beyond orjson, perhaps not beyond the standard library
        return _COMPACT.encode(value)


def strict_json(data: str | bytes) -> JsonValue:
    """JSON as JOSE must read it: octets as UTF-8 only (RFC 7515 §5.2, RFC 7519 §7.2; ``json.loads``
    would also take UTF-16, UTF-32 and a BOM), duplicate member names and NaN/Infinity refused, so that
    no two parsers (the Authority's and ours) can read one header or claims set two ways. Raises
    ValueError (UnicodeDecodeError is one)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return _STRICT.decode(text)


class AmbiguousObject(dict[str, JsonValue]):
    """A JSON object that repeated a member name (what ``tolerant_json`` returns in its place)."""


def _flag_duplicates(pairs: list[tuple[str, JsonValue]]) -> JsonObject:
    obj = dict(pairs)
    return AmbiguousObject(obj) if len(obj) != len(pairs) else obj


def tolerant_json(data: str | bytes) -> JsonValue:
    """JSON where an object with duplicate names becomes an ``AmbiguousObject`` instead of failing the
    whole document: a JWKS with one such key stays usable for its other keys. Raises ValueError."""
    return json.loads(
        data, object_pairs_hook=_flag_duplicates, parse_constant=_no_constant, parse_float=_finite_float
    )


@dataclass(frozen=True, slots=True)
class PublicJwk:
    """A parsed public JWK: the members that decide what it may verify, and the key itself."""

    kty: str
    crv: str | None
    alg: str | None
    kid: str | None
    key: PublicKey

    @classmethod
    def parse(cls, jwk: Mapping[str, JsonValue]) -> PublicJwk:
        """Parse a public JWK; raises ValueError for private, malformed or unsupported keys."""
        if not isinstance(jwk, Mapping):
            raise ValueError("a JWK is a JSON object")
        if isinstance(jwk, AmbiguousObject):
            raise ValueError("the JWK repeats a member name")
        if PRIVATE_MEMBERS & set(jwk):
            raise ValueError("JWKs must hold public keys only")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        if kty == "EC":
            if crv not in _CURVES:
                raise ValueError(f"unsupported curve {crv!r}")
            curve, size, _ = _CURVES[crv]
            x, y = b64url_decode(jwk.get("x", "")), b64url_decode(jwk.get("y", ""))
            if len(x) != size or len(y) != size:
                raise ValueError("EC coordinates have the wrong length")
            key: PublicKey = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()  # raises ValueError for a point not on the curve
        elif kty == "OKP":
            if crv != "Ed25519":
                raise ValueError(f"unsupported curve {crv!r}")
            x = b64url_decode(jwk.get("x", ""))
            if len(x) != 32:
                raise ValueError("an Ed25519 key is 32 bytes")
            key = Ed25519PublicKey.from_public_bytes(x)
        elif kty == "RSA":
            n, e = b64url_decode(jwk.get("n", "")), b64url_decode(jwk.get("e", ""))
            if not e or not n:
                raise ValueError("an RSA key needs n and e")
            modulus = int.from_bytes(n, "big")
            if modulus.bit_length() < _MIN_RSA_BITS:
                raise ValueError(f"RSA keys need at least {_MIN_RSA_BITS} bits")
            key = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), modulus).public_key()
        else:
            raise ValueError(f"unsupported key type {kty!r}")
        alg, kid = jwk.get("alg"), jwk.get("kid")
        return cls(
            kty,
            crv if isinstance(crv, str) else None,
            alg if isinstance(alg, str) else None,
            kid if isinstance(kid, str) else None,
            key,
        )

    def can_verify(self, alg: str) -> bool:
        """The header ``alg`` must match the key type, curve and (when present) the JWK ``alg``."""
        requirement = KEY_REQUIREMENTS.get(alg)
        if requirement is None:
            return False
        kty, crv = requirement
        return self.kty == kty and (crv is None or self.crv == crv) and self.alg in (None, alg)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is a valid ``alg`` signature by this key; never raises."""
        if not self.can_verify(alg):
            return False
        try:
            if self.kty == "EC":
                _, size, ecdsa = _CURVES[self.crv or ""]
                if len(signature) != 2 * size:
                    return False
                der = encode_dss_signature(
                    int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                )
                cast("ec.EllipticCurvePublicKey", self.key).verify(der, signing_input, ecdsa)
            elif self.kty == "OKP":
                cast("Ed25519PublicKey", self.key).verify(signature, signing_input)
            else:
                cast("rsa.RSAPublicKey", self.key).verify(
                    signature,
                    signing_input,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                    hashes.SHA256(),
                )
        except (InvalidSignature, ValueError):
            return False
        return True


__all__ = [
    "KEY_REQUIREMENTS",
    "ORJSON_OPTIONS",
    "PRIVATE_MEMBERS",
    "AmbiguousObject",
    "JsonObject",
    "JsonValue",
    "PublicJwk",
    "PublicKey",
    "b64url",
    "b64url_decode",
    "compact_json",
    "sha256_b64url",
    "strict_json",
    "tolerant_json",
]
