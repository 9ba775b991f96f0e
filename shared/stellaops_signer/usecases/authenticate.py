"""authenticate: who is calling (spec §3.1). All 401s of the service come from here."""

from __future__ import annotations

from dataclasses import dataclass

from stellaops_signer.domain.binding import Principal, verify_certificate_binding
from stellaops_signer.domain.errors import InvalidToken
from stellaops_signer.domain.tokens import CompactJws, OpToken, verify_op_token
from stellaops_signer.ports import Clock, KeySetSource


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the authorizer sees of one HTTP request."""

    method: str
    path: str
    authorization: str | None
    dpop_proof: str | None
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


class Authenticator:
    """Verifies the OpTok and the proof that the caller holds the key it is bound to."""

    def __init__(self, *, authority_keys: KeySetSource, issuer: str, max_lifetime: int, clock: Clock) -> None:
        self._keys = authority_keys
        self._issuer = issuer
        self._max_lifetime = max_lifetime
        self._clock = clock

    def verify_token(self, token: str) -> OpToken:
        """Signature, issuer, audience, times, claims and ``cnf`` of an OpTok; raises InvalidToken."""
        jws = CompactJws.parse(token)
        return verify_op_token(
            jws,
            self._keys.key_set(jws.kid),
            issuer=self._issuer,
            now=self._clock.now(),
            max_lifetime=self._max_lifetime,
        )

    def authenticate(self, request: RequestFacts) -> Principal:
        """Authenticate an HTTP request: an OpTok plus its sender constraint; raises InvalidToken."""
        scheme, token = parse_authorization(request.authorization)
        op_token = self.verify_token(token)
        if scheme == "bearer":
            verify_certificate_binding(op_token, request.client_cert_pem)  # RFC 8705 §3
            return Principal.from_token(op_token, "mtls")
        raise InvalidToken("DPoP-bound tokens are not accepted yet", scheme="DPoP")

    def authenticate_iam(self, token: str | None) -> Principal:
        """A direct invocation (IAM-authenticated): the OpTok is verified, the binding is ``iam``."""
        if not token:
            raise InvalidToken("opToken is required")
        return Principal.from_token(self.verify_token(token), "iam")
