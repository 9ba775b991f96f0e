"""DPoP proofs (RFC 9449) and the Signer's stateless server nonces.

``verify_proof`` follows RFC 9449 §4.3 ("Checking DPoP Proofs") step by step; the replay
check (the ``jti`` must be new) is the caller's last step, against a shared store, so that
only proofs that passed everything else are remembered. Every failure raises
``InvalidDpopProof``; a missing or stale nonce raises ``UseDpopNonce`` (§8).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from stellaops_signer.domain.errors import InvalidDpopProof, UseDpopNonce
from stellaops_signer.domain.jose import (
    JsonObject,
    PublicJwk,
    b64url,
    b64url_decode,
    sha256_b64url,
    strict_json,
)
from stellaops_signer.domain.tokens import CLOCK_SKEW_SECONDS, CompactJws, jwk_thumbprint, protected_header

PROOF_TYPE = "dpop+jwt"
#: The Signer is a high-value audience: only these proof algorithms (spec §3.1).
PROOF_ALGORITHMS = ("ES256", "EdDSA")
MAX_PROOF_BYTES = 8192
_UNRESERVED = "-._~"
_DEFAULT_PORTS = {"http": 80, "https": 443}


# Not frozen: made on every request's path and used at once (a frozen init costs 5x; decision 0017).
@dataclass(slots=True)
class DpopProof:
    """A proof that passed every check but the replay check."""

    jti: str
    iat: int
    #: RFC 7638 thumbprint of the proof's public key (what ``cnf.jkt`` must equal).
    jkt: str
    #: The server nonce the proof carries, checked by ``NonceKeeper.check``.
    nonce: str | None

    @property
    def replay_key(self) -> str:
        """What the replay store remembers: the jti scoped to the key, hashed (bounded, opaque)."""
        return hashlib.sha256(f"{self.jkt}:{self.jti}".encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def normalize_uri(uri: str) -> str:
    """RFC 3986 §6.2.2–6.2.3 normalisation of an http(s) URI, without query and fragment.

    Case of scheme and host, default port, percent-encoding (upper-case hex, unreserved
    characters decoded), dot segments, and an empty path as "/". Raises ValueError.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        raise ValueError("htu must be an absolute http(s) URI without user information")
    host = parts.hostname.lower()
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]" if port in (None, _DEFAULT_PORTS[scheme]) else f"[{host}]:{port}"
    segments: list[str] = []
    for segment in parts.path.split("/")[1:] if parts.path else [""]:
        # decode what is unreserved, re-encode the rest with upper-case hex (§6.2.2.1–2)
        segment = quote(unquote(segment, errors="strict"), safe="!$&'()*+,;=:@" + _UNRESERVED)
        if segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if parts.path.endswith(("/.", "/..")) and not path.endswith("/"):
        path += "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None,
    expected_jkt: str | None,
    now: float,
) -> DpopProof:
    """RFC 9449 §4.3 checks 2–9, 11 and 12; the nonce and ``jti`` replay are checked by the
    caller (``NonceKeeper.check``, the replay store). ``access_token`` and ``expected_jkt``
    are None only for a token request (§5), which has no ``ath`` and no key to match yet."""
    if len(proof) > MAX_PROOF_BYTES:
        raise InvalidDpopProof("the DPoP proof is too large")
    # §4.3 (2): a well-formed JWT.
    jws = CompactJws.parse(proof, InvalidDpopProof)
    header = jws.header
    # (4) typ, (5) an asymmetric algorithm this server accepts, (7) a public key.
    if header.get("typ") != PROOF_TYPE:
        raise InvalidDpopProof('the proof typ must be "dpop+jwt"')
    alg = header.get("alg")
    if alg not in PROOF_ALGORITHMS:
        raise InvalidDpopProof(f"proof algorithm {alg!r} is not accepted")
    if "crit" in header:
        raise InvalidDpopProof("critical header parameters are not supported")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidDpopProof("the proof header needs a jwk")
    try:
        key, thumbprint = _proof_key(jws.signing_input.partition(b".")[0].decode("ascii"))
    except (ValueError, TypeError):
        raise InvalidDpopProof("the proof jwk must be a supported public key") from None
    # (6) the signature, with the key in the header.
    if not key.can_verify(alg) or not key.verify(alg, jws.signing_input, jws.signature):
        raise InvalidDpopProof("the proof signature does not verify")
    claims = _claims(jws.payload)
    # (3) the required claims, with the right types.
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
        raise InvalidDpopProof("the proof needs a jti")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise InvalidDpopProof("the proof needs htm and htu")
    if type(iat) is not int:
        raise InvalidDpopProof("the proof iat must be an integer")
    # (8) htm, (9) htu without query and fragment, after normalisation.
    if htm != method:
        raise InvalidDpopProof("the proof htm does not match the request method")
    try:
        same_target = normalize_uri(htu) == normalize_uri(url)
    except (ValueError, UnicodeError):
        same_target = False
    if not same_target:
        raise InvalidDpopProof("the proof htu does not match the request URI")
    # (11) iat within the window.
    if abs(iat - now) > CLOCK_SKEW_SECONDS:
        raise InvalidDpopProof("the proof iat is outside the acceptance window")
    # (12) ath and the key binding of the access token.
    if access_token is None:
        if "ath" in claims:
            raise InvalidDpopProof("a token request proof carries no ath")
    elif not hmac.compare_digest(str(claims.get("ath", "")), _token_hash(access_token)):
        raise InvalidDpopProof("the proof ath does not match the access token")
    if expected_jkt is not None and not hmac.compare_digest(thumbprint, expected_jkt):
        raise InvalidDpopProof("the proof key is not the key the token is bound to")
    nonce = claims.get("nonce")
    return DpopProof(jti=jti, iat=iat, jkt=thumbprint, nonce=nonce if isinstance(nonce, str) else None)


@functools.lru_cache(maxsize=1024)
def _token_hash(access_token: str) -> str:
    """``ath`` of an access token (RFC 9449 §4.2), once per token: a client's proofs repeat it."""
    return sha256_b64url(access_token.encode("ascii"))


@functools.lru_cache(maxsize=1024)
def _proof_key(header_segment: str) -> tuple[PublicJwk, str]:
    """The key and thumbprint of a proof's ``jwk``, parsed once per distinct protected header
    (clients reuse their key, and validating an EC point costs as much as a signature check): the
    header's base64url text names the JWK exactly. Raises ValueError or TypeError."""
    header = protected_header(header_segment)  # decoded already, by CompactJws.parse
    jwk = header.get("jwk") if isinstance(header, dict) else None
    if not isinstance(jwk, dict):
        raise TypeError("the proof header needs a jwk")
    return PublicJwk.parse(jwk), jwk_thumbprint(jwk)


def _claims(payload: bytes) -> JsonObject:
    try:
        claims = strict_json(payload)
    except (ValueError, RecursionError):
        raise InvalidDpopProof("the proof claims are not JSON with unique member names") from None
    if not isinstance(claims, dict):
        raise InvalidDpopProof("the proof claims are not a JSON object")
    return claims


class NonceKeeper:
    """Stateless server nonces (RFC 9449 §8): ``step ‖ HMAC(key, step)``, valid for ``ttl`` seconds.

    Any Lambda instance holding the key can mint and check them; nothing is stored.
    """

    STEP_SECONDS = 30
    _TAG_BYTES = 16

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        if len(key) < 16:
            raise ValueError("the nonce key needs at least 128 bits")
        self._key = key
        self._ttl = ttl_seconds
        self._tags: dict[int, bytes] = {}

    def _tag(self, step: int) -> bytes:
        cached = self._tags.get(step)
        if cached is None:
            cached = hmac.new(
                self._key, b"stellaops-dpop-nonce|" + struct.pack(">Q", step), "sha256"
            ).digest()
            cached = cached[: self._TAG_BYTES]
            if len(self._tags) > 64:  # a few steps' worth: the nonce TTL over the step, and some
                self._tags.clear()
            self._tags[step] = cached
        return cached

    def issue(self, now: float) -> str:
        step = int(now) // self.STEP_SECONDS
        return b64url(struct.pack(">Q", step) + self._tag(step))

    def check(self, nonce: str | None, now: float) -> None:
        """Raise UseDpopNonce (with a fresh nonce) unless ``nonce`` is one of ours and fresh."""
        if nonce is None:
            raise self._use_nonce("the server requires a DPoP nonce", now)
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            raise self._use_nonce("the DPoP nonce is not one of ours", now) from None
        if len(raw) != 8 + self._TAG_BYTES:
            raise self._use_nonce("the DPoP nonce is not one of ours", now)
        (step,) = struct.unpack(">Q", raw[:8])
        if not hmac.compare_digest(raw[8:], self._tag(step)):
            raise self._use_nonce("the DPoP nonce is not one of ours", now)
        age = now - step * self.STEP_SECONDS
        if age > self._ttl or age < -CLOCK_SKEW_SECONDS:
            raise self._use_nonce("the DPoP nonce is stale", now)

    def _use_nonce(self, detail: str, now: float) -> UseDpopNonce:
        return UseDpopNonce(detail, headers={"DPoP-Nonce": self.issue(now)})


__all__ = [
    "MAX_PROOF_BYTES",
    "PROOF_ALGORITHMS",
    "PROOF_TYPE",
    "DpopProof",
    "NonceKeeper",
    "normalize_uri",
    "verify_proof",
]
