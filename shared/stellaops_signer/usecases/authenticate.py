"""authenticate: who is calling (spec §3.1). All 401s of the service come from here.

A request carries an OpTok bound to a key the caller must prove it holds: its mTLS client
certificate (``Bearer``, RFC 8705) or a DPoP key (``DPoP``, RFC 9449). A direct invocation
(Step Functions, IAM-authenticated) verifies the OpTok alone, with binding kind ``iam``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stellaops_signer.domain.authorization import check_tenant
from stellaops_signer.domain.binding import Principal, verify_certificate_binding
from stellaops_signer.domain.dpop import NonceKeeper, verify_proof
from stellaops_signer.domain.errors import InvalidDpopProof, InvalidToken
from stellaops_signer.domain.tokens import (
    CLOCK_SKEW_SECONDS,
    CompactJws,
    OpToken,
    SignatureCache,
    check_time_claims,
    verify_op_token,
)
from stellaops_signer.ports import Clock, KeySetSource, ReplayStore

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonObject


# Not frozen: made on every request's path and used at once (a frozen init costs 5x; decision 0017).
@dataclass(slots=True)
class RequestFacts:
    """What the authorizer sees of one HTTP request."""

    method: str
    path: str
    authorization: str | None
    #: Every ``DPoP`` header value (RFC 9449 §4.3 (1): exactly one is allowed).
    dpop_proofs: tuple[str, ...]
    client_cert_pem: str | None


def parse_authorization(value: str | None) -> tuple[str, str]:
    """Split ``Authorization`` into (scheme lower-cased, token); raises InvalidToken."""
    if not value:
        raise InvalidToken("an Authorization header with a sender-constrained token is required")
    scheme, _, token = value.strip().partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme not in ("bearer", "dpop") or not token or " " in token:
        raise InvalidToken("Authorization must be 'DPoP <token>' or 'Bearer <token>'")
    return scheme, token


class TokenVerifier:
    """Verifies OpToks against the Authority's keys (signature, issuer, audience, times, claims)."""

    def __init__(self, *, authority_keys: KeySetSource, issuer: str, max_lifetime: int, clock: Clock) -> None:
        self._keys = authority_keys
        self._issuer = issuer
        self._max_lifetime = max_lifetime
        self._clock = clock
        self._signatures = SignatureCache()
        #: Token text → (its verified claims, the OpToken read from them): the rules that depend on
        #: the claims alone are applied once per verified signature, the time rules on every use.
        self._read: dict[str, tuple[JsonObject, OpToken]] = {}

    def verify(self, token: str) -> OpToken:
        """Raises InvalidToken naming the first rule the token breaks."""
        jws = CompactJws.parse(token)
        keys, now = self._keys.key_set(jws.kid), self._clock.now()
        verified = self._signatures.verify(jws, token, keys, now)
        read = self._read.get(token)
        if read is not None and read[0] is verified[1]:  # the same verification: only time has moved
            check_time_claims(verified[1], now, max_lifetime=self._max_lifetime)
            return read[1]
        op_token = verify_op_token(
            jws, keys, issuer=self._issuer, now=now, max_lifetime=self._max_lifetime, verified=verified
        )
        if len(self._read) >= 4096:
            self._read.clear()
        self._read[token] = (verified[1], op_token)
        return op_token

    def authenticate_iam(self, token: object) -> Principal:
        """A direct invocation (IAM-authenticated): the OpTok is verified, the binding is ``iam``."""
        if not isinstance(token, str) or not token:
            raise InvalidToken("opToken is required")
        return Principal.from_token(self.verify(token), "iam")

    def authenticate_step(self, token: object, tenant: object) -> Principal:
        """The pipeline's Authenticate step: the OpTok (binding ``iam``) and, when the execution
        names a tenant, that it is the token's — as ``X-StellaOps-Tenant`` is checked over HTTP.
        Raises InvalidToken or TenantMismatch."""
        principal = self.authenticate_iam(token)
        check_tenant(principal, tenant if isinstance(tenant, str) or tenant is None else str(tenant))
        return principal

    def confirm(
        self, claimed: Principal, authorization: str | None, client_cert_pem: str | None
    ) -> Principal:
        """The principal of an API Gateway proxy event: its authorizer context, accepted only if the
        event also carries a valid token for exactly that principal (spec §6). An event shaped like a
        proxy event but invoked directly, with a context written by hand, is thus never a way around
        the token. The proof of possession was the authorizer's to check (a DPoP proof is single-use);
        the mTLS certificate is checked again because it costs nothing. Raises InvalidToken."""
        scheme, token = parse_authorization(authorization)
        if scheme != {"mtls": "bearer", "dpop": "dpop"}.get(claimed.binding):
            raise InvalidToken("the Authorization scheme does not match the authenticated binding")
        op_token = self.verify(token)
        if claimed.binding == "mtls":
            verify_certificate_binding(op_token, client_cert_pem)
        elif op_token.binding != "jkt":
            raise InvalidToken("a certificate-bound token must be presented with the Bearer scheme")
        if Principal.from_token(op_token, claimed.binding) != claimed:
            raise InvalidToken("the authorizer context does not match the token")
        return claimed


class Authenticator:
    """An HTTP request's OpTok plus the proof that the caller holds the key it is bound to."""

    def __init__(
        self,
        *,
        tokens: TokenVerifier,
        public_base_url: str,
        nonces: NonceKeeper,
        require_nonce: bool,
        replay: ReplayStore,
        clock: Clock,
    ) -> None:
        self._tokens = tokens
        self._base_url = public_base_url.rstrip("/")
        self._nonces = nonces
        self._require_nonce = require_nonce
        self._replay = replay
        self._clock = clock

    def fresh_nonce(self) -> str:
        return self._nonces.issue(self._clock.now())

    def authenticate(self, request: RequestFacts) -> Principal:
        """Raises InvalidToken, InvalidDpopProof or UseDpopNonce (all 401)."""
        scheme, token = parse_authorization(request.authorization)
        if scheme == "bearer":
            op_token = self._tokens.verify(token)
            verify_certificate_binding(op_token, request.client_cert_pem)  # RFC 8705 §3
            return Principal.from_token(op_token, "mtls")
        try:
            op_token = self._tokens.verify(token)
        except InvalidToken as error:
            error.scheme = "DPoP"
            raise
        if op_token.binding != "jkt":
            raise InvalidToken(
                "a certificate-bound token must be presented with the Bearer scheme", scheme="DPoP"
            )
        self._prove_possession(request, token, op_token)
        return Principal.from_token(op_token, "dpop")

    def _prove_possession(self, request: RequestFacts, token: str, op_token: OpToken) -> None:
        """RFC 9449 §4.3 and §7.1: one valid proof, fresh nonce, never seen before."""
        if len(request.dpop_proofs) != 1:
            raise InvalidDpopProof("exactly one DPoP proof header is required")
        now = self._clock.now()
        proof = verify_proof(
            request.dpop_proofs[0],
            method=request.method,
            url=self._base_url + request.path,
            access_token=token,
            expected_jkt=op_token.sender_key,
            now=now,
        )
        if self._require_nonce:
            self._nonces.check(proof.nonce, now)
        # Last: only proofs that passed every other check are remembered; one winner across
        # every instance (a conditional write), kept past the end of the acceptance window.
        self._replay.remember(
            proof.replay_key, expires_at=int(max(now, proof.iat)) + 2 * CLOCK_SKEW_SECONDS + 60
        )


__all__ = ["Authenticator", "RequestFacts", "TokenVerifier", "parse_authorization"]
