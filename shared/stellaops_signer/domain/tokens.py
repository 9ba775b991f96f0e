"""Authority operational tokens (OpToks): JWS verification and the claim rules of spec §3.1.

The key set, the expected issuer and the clock are inputs; nothing here reads the
environment or the time. Every failure raises InvalidToken.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard

from stellaops_signer.domain.errors import EntitlementDenied, InvalidDpopProof, InvalidToken, SignerError
from stellaops_signer.domain.jose import (
    KEY_REQUIREMENTS,
    PRIVATE_MEMBERS,
    AmbiguousObject,
    JsonObject,
    JsonValue,
    PublicJwk,
    b64url_decode,
    sha256_b64url,
    strict_json,
)

AUDIENCE = "signer"
CLOCK_SKEW_SECONDS = 30
#: Asymmetric only; never ``none``, never HMAC (spec §3.1).
ALLOWED_ALGORITHMS = tuple(KEY_REQUIREMENTS)
#: How an OpTok is bound: to a DPoP key (RFC 9449 §6) or to a certificate (RFC 8705 §3.1).
ConfirmationKind = Literal["jkt", "x5t#S256"]


def subject_of(error: type[SignerError]) -> str:
    """What a refusal is about, in words (a PoE's refusal must not read as if the OpToken were wrong)."""
    return {EntitlementDenied: "the Proof-of-Entitlement", InvalidDpopProof: "the DPoP proof"}.get(
        error, "the token"
    )


class KeySet:
    """The keys an issuer signs with, looked up by ``kid``."""

    def __init__(self, keys: list[PublicJwk], skipped: tuple[str, ...] = ()) -> None:
        self.keys = keys
        #: Why each key of the JWKS that cannot be used was left out (for the adapter to log).
        self.skipped = skipped
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}

    @classmethod
    def from_jwks(cls, jwks: JsonValue) -> KeySet:
        """The usable keys of a JWKS (RFC 7517 §5): unsupported or malformed keys are skipped, so that
        an issuer publishing, say, a P-521 key beside its P-256 one keeps working. Raises ValueError for
        a document that is not a JWKS, one without a usable key, or two keys sharing a ``kid`` (which
        one a token means would be ambiguous)."""
        keys = jwks.get("keys") if isinstance(jwks, dict) and not isinstance(jwks, AmbiguousObject) else None
        if not isinstance(keys, list) or not keys:
            raise ValueError("a JWKS needs a non-empty 'keys' list")
        usable: list[PublicJwk] = []
        skipped: list[str] = []
        kids: set[str] = set()
        for position, member in enumerate(keys):
            kid = member.get("kid") if isinstance(member, dict) else None
            if isinstance(kid, str):
                if kid in kids:
                    raise ValueError(f"the JWKS has two keys with kid {kid!r}")
                kids.add(kid)
            if isinstance(member, dict) and PRIVATE_MEMBERS & (set(member) - _skippable_secret(member)):
                # not a key to skip: the issuer has published (so leaked) an asymmetric private key
                raise ValueError("JWKs must hold public keys only")
            try:
                usable.append(PublicJwk.parse(member))
            except (ValueError, TypeError) as exc:
                skipped.append(f"key {position} ({kid if isinstance(kid, str) else 'no kid'}): {exc}")
        if not usable:
            raise ValueError("the JWKS holds no usable key: " + "; ".join(skipped))
        return cls(usable, tuple(skipped))

    def find(self, kid: str | None) -> PublicJwk | None:
        if kid is None:
            return self.keys[0] if len(self.keys) == 1 else None
        return self._by_kid.get(kid)


def _skippable_secret(jwk: JsonObject) -> set[str]:
    """An ``oct`` key's ``k`` is a secret the JWKS should not hold, but no asymmetric key: skipped, not
    fatal. ``d``, ``p``, ``q``… are asymmetric private members whatever ``kty`` says (it may even be
    repeated, one reader taking ``EC`` and another ``oct``), so they always refuse the document."""
    return {"k"} if jwk.get("kty") == "oct" else set()


@dataclass(frozen=True, slots=True)
class OpToken:
    """A verified OpTok: who calls, for which tenant and installation, with which scopes."""

    subject: str
    client_id: str
    tenant: str
    installation: str
    scopes: frozenset[str]
    binding: ConfirmationKind
    #: ``cnf.jkt`` or ``cnf.x5t#S256``: the thumbprint of the sender's key.
    sender_key: str
    issued_at: int
    expires_at: int
    token_id: str | None


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A JWS in compact serialization (RFC 7515 §7.1), decoded but not yet verified."""

    header: JsonObject
    signing_input: bytes
    payload: bytes
    signature: bytes

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @classmethod
    def parse(cls, token: str, error: type[SignerError] = InvalidToken) -> CompactJws:
        """Split and decode (the last 1024 distinct texts are remembered: a token is parsed once per
        container however often it is presented); raises ``error`` for anything but three base64url
        segments and a JSON-object header."""
        parsed = _parse_cached(token)
        if isinstance(parsed, str):
            raise error(parsed.replace("the token", subject_of(error), 1))
        return parsed

    @classmethod
    def _parse(cls, token: str) -> CompactJws | str:
        """The JWS, or why ``token`` is none."""
        parts = token.split(".")
        if len(parts) != 3:
            return "the token is not a compact JWS"
        try:
            header = protected_header(parts[0])
            payload, signature = b64url_decode(parts[1]), b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "the token is not a well-formed JWS (base64url, JSON with unique member names)"
        if not isinstance(header, dict):
            return "the JWS header is not a JSON object"
        return cls(header, f"{parts[0]}.{parts[1]}".encode("ascii"), payload, signature)


@functools.lru_cache(maxsize=1024)
def _parse_cached(token: str) -> CompactJws | str:
    return CompactJws._parse(token)


@functools.lru_cache(maxsize=1024)
def protected_header(segment: str) -> JsonValue:
    """A protected header, decoded once per distinct text: a client's DPoP proofs share theirs (typ,
    alg, jwk) while each proof is new. Shared between the JWSs that carry it: read only."""
    return strict_json(b64url_decode(segment))


def verify_jws(
    token: str | CompactJws, keys: KeySet, error: type[SignerError] = InvalidToken
) -> tuple[JsonObject, JsonObject]:
    """Verify a compact JWS against ``keys``; return (header, claims). Raises ``error``."""
    jws = token if isinstance(token, CompactJws) else CompactJws.parse(token, error)
    header = jws.header
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extension, so refuse them all
        raise error(f"{subject_of(error)}: critical header parameters are not supported")
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise error(f"{subject_of(error)}: algorithm {alg!r} is not accepted")
    if "kid" in header and jws.kid is None:
        raise error(f"{subject_of(error)}: kid must be a string")
    key = keys.find(jws.kid)
    if key is None:
        raise error(f"{subject_of(error)}: the signing key is unknown")
    if not key.can_verify(alg):
        raise error(f"{subject_of(error)}: the header algorithm does not match the key")
    if not key.verify(alg, jws.signing_input, jws.signature):
        raise error(f"{subject_of(error)}: the signature does not verify")
    try:
        claims = strict_json(jws.payload)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and repeated member names
        raise error(f"{subject_of(error)}: the claims are not JSON with unique member names") from None
    if not isinstance(claims, dict):
        raise error(f"{subject_of(error)}: the claims are not a JSON object")
    return header, claims


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number as a NumericDate must be: an int or a finite float (a bool is neither)."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def check_time_claims(
    claims: Mapping[str, JsonValue],
    now: float,
    *,
    max_lifetime: int | None,
    error: type[SignerError] = InvalidToken,
) -> tuple[int, int]:
    """``exp`` and ``iat`` required, ``nbf`` when present, ±30 s skew; returns (iat, exp)."""
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    if not _is_number(exp):
        raise error(f"{subject_of(error)}: exp must be a number")
    if not _is_number(iat):
        raise error(f"{subject_of(error)}: iat must be a number")
    if nbf is not None and not _is_number(nbf):
        raise error(f"{subject_of(error)}: nbf must be a number")
    if exp <= now - CLOCK_SKEW_SECONDS:
        raise error(f"{subject_of(error)} has expired")
    if iat > now + CLOCK_SKEW_SECONDS:
        raise error(f"{subject_of(error)} was issued in the future")
    if nbf is not None and nbf > now + CLOCK_SKEW_SECONDS:
        raise error(f"{subject_of(error)} is not valid yet")
    if max_lifetime is not None and exp - iat > max_lifetime:
        raise error(f"{subject_of(error)} lives longer than {max_lifetime} s")
    return int(iat), int(exp)


class SignatureCache:
    """Compact JWS text → the (header, claims) of a signature verified against one key set, for at
    most ``ttl`` seconds. Clients reuse an OpTok (or a PoE) for its lifetime: its signature is then
    verified once per container while every claim rule still runs on every use. An entry counts
    only for the very ``KeySet`` it was verified with, so a refreshed JWKS verifies again."""

    def __init__(self, ttl: float = 300.0, size: int = 4096) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: dict[str, tuple[float, KeySet, JsonObject, JsonObject]] = {}

    def verify(
        self, jws: CompactJws, text: str, keys: KeySet, now: float, error: type[SignerError] = InvalidToken
    ) -> tuple[JsonObject, JsonObject]:
        hit = self._entries.get(text)
        if hit is not None and hit[0] > now and hit[1] is keys:
            return hit[2], hit[3]
        header, claims = verify_jws(jws, keys, error)
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[text] = (now + self._ttl, keys, header, claims)
        return header, claims


def _required_string(claims: Mapping[str, JsonValue], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"claim {name!r} is required")
    return value


def verify_op_token(
    token: str | CompactJws,
    keys: KeySet,
    *,
    issuer: str,
    now: float,
    max_lifetime: int,
    verified: tuple[JsonObject, JsonObject] | None = None,
) -> OpToken:
    """Verify an OpTok per spec §3.1 (``verified``: its signature's result, already checked); raises
    InvalidToken naming the first rule it breaks."""
    _, claims = verified or verify_jws(token, keys)
    if claims.get("iss") != issuer:
        raise InvalidToken("the token was issued by another issuer")
    audience = claims.get("aud")
    if audience != AUDIENCE and audience != [AUDIENCE]:
        raise InvalidToken(f"the audience must be exactly {AUDIENCE!r}")
    iat, exp = check_time_claims(claims, now, max_lifetime=max_lifetime)
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("scope must be a space-separated string")
    tenant = _required_string(claims, "tid")
    installation = _required_string(claims, "inst")
    subject = _required_string(claims, "sub")
    binding, sender_key = _confirmation(claims.get("cnf"))
    client_id = claims.get("client_id") or claims.get("azp") or subject
    jti = claims.get("jti")
    return OpToken(
        subject=subject,
        client_id=str(client_id),
        tenant=tenant,
        installation=installation,
        scopes=frozenset(scope.split()),
        binding=binding,
        sender_key=sender_key,
        issued_at=iat,
        expires_at=exp,
        token_id=jti if isinstance(jti, str) else None,
    )


def _confirmation(cnf: JsonValue) -> tuple[ConfirmationKind, str]:
    """RFC 7800 ``cnf`` with exactly one of ``jkt`` (RFC 9449 §6) or ``x5t#S256`` (RFC 8705 §3.1)."""
    if not isinstance(cnf, dict):
        raise InvalidToken("the token is not sender-constrained (no cnf)")
    members = [m for m in ("jkt", "x5t#S256") if m in cnf]
    if len(members) != 1:
        raise InvalidToken("cnf must hold exactly one of jkt and x5t#S256")
    kind: ConfirmationKind = "jkt" if members[0] == "jkt" else "x5t#S256"
    value = cnf[kind]
    if not isinstance(value, str) or len(value) != 43:
        raise InvalidToken(f"cnf.{kind} must be a base64url SHA-256 thumbprint")
    return kind, value


#: RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}


def jwk_thumbprint(jwk: Mapping[str, JsonValue]) -> str:
    """RFC 7638 JWK SHA-256 thumbprint, base64url without padding; raises ValueError."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ValueError("the JWK lacks the members its thumbprint needs")
    canonical = "{" + ",".join(f'"{m}":{json.dumps(jwk[m])}' for m in members) + "}"
    return sha256_b64url(canonical.encode("utf-8"))


__all__ = [
    "ALLOWED_ALGORITHMS",
    "AUDIENCE",
    "CLOCK_SKEW_SECONDS",
    "CompactJws",
    "ConfirmationKind",
    "KeySet",
    "OpToken",
    "SignatureCache",
    "check_time_claims",
    "jwk_thumbprint",
    "protected_header",
    "subject_of",
    "verify_jws",
    "verify_op_token",
]
