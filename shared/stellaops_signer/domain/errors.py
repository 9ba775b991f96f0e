"""One error tree for the whole service.

Each error carries the spec's code (§3.6) and HTTP status; the class name is the code in
PascalCase so that Step Functions ``Retry``/``Catch`` can match ``errorType`` (§6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal


class SignerError(Exception):
    """A refusal the caller is told about: status + code + a detail safe to show."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequest(SignerError):
    code, status, title = "invalid_request", 400, "Invalid request"


class UnsupportedPredicateType(SignerError):
    code, status, title = "unsupported_predicate_type", 400, "Unsupported predicate type"


class AuthenticationError(SignerError):
    """A 401: carries the challenge for ``WWW-Authenticate`` (RFC 6750 §3, RFC 9449 §7.1)."""

    status = 401
    #: "Bearer" or "DPoP": the scheme the challenge names.
    scheme: str = "Bearer"

    def __init__(
        self, detail: str, *, scheme: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail, headers=headers)
        self.scheme = scheme or type(self).scheme


class InvalidToken(AuthenticationError):
    code, title = "invalid_token", "Invalid token"


class InvalidDpopProof(AuthenticationError):
    code, title, scheme = "invalid_dpop_proof", "Invalid DPoP proof", "DPoP"


class UseDpopNonce(AuthenticationError):
    code, title, scheme = "use_dpop_nonce", "DPoP nonce required", "DPoP"


class InsufficientScope(SignerError):
    code, status, title = "insufficient_scope", 403, "Insufficient scope"


class TenantMismatch(SignerError):
    code, status, title = "tenant_mismatch", 403, "Tenant mismatch"


class EntitlementDenied(SignerError):
    code, status, title = "entitlement_denied", 403, "Entitlement denied"


class ReleaseUntrusted(SignerError):
    code, status, title = "release_untrusted", 403, "Scanner release untrusted"


class NotFound(SignerError):
    code, status, title = "not_found", 404, "Not found"


class IdempotencyConflict(SignerError):
    code, status, title = "idempotency_conflict", 409, "Idempotency conflict"


class ArtifactTooLarge(SignerError):
    code, status, title = "artifact_too_large", 413, "Artifact too large"


class PlanThrottled(SignerError):
    code, status, title = "plan_throttled", 429, "Plan throttled"


class QuotaExhausted(SignerError):
    code, status, title = "quota_exhausted", 429, "Quota exhausted"


class ReleaseUnverifiable(SignerError):
    code, status, title = "release_unverifiable", 502, "Release unverifiable"


class EntitlementUnavailable(SignerError):
    code, status, title = "entitlement_unavailable", 503, "Entitlement unavailable"


class SigningUnavailable(SignerError):
    code, status, title = "signing_unavailable", 503, "Signing unavailable"


class AuditUnavailable(SignerError):
    code, status, title = "audit_unavailable", 503, "Audit unavailable"


class InternalError(SignerError):
    code, status, title = "internal_error", 500, "Internal error"


class ConfigurationError(Exception):
    """A missing or malformed setting: stops the cold start (never reaches a caller as a 4xx)."""


class on_refusal:
    """Run ``compensate`` with the refusal (an unexpected exception counts as ``internal_error``)
    before it propagates: how a use case gives back what it reserved and audits a denial, in one
    place. It translates nothing: the original exception is re-raised. (A class rather than a
    ``contextmanager`` generator: it is on every request's path.)"""

    __slots__ = ("_compensate",)

    def __init__(self, compensate: Callable[[SignerError], None]) -> None:
        self._compensate = compensate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> Literal[False]:
        if isinstance(error, SignerError):
            self._compensate(error)
        elif isinstance(error, Exception):
            self._compensate(InternalError("unexpected error"))
        return False  # re-raised as it is


__all__ = [
    "ArtifactTooLarge",
    "AuditUnavailable",
    "AuthenticationError",
    "ConfigurationError",
    "EntitlementDenied",
    "EntitlementUnavailable",
    "IdempotencyConflict",
    "InsufficientScope",
    "InternalError",
    "InvalidDpopProof",
    "InvalidRequest",
    "InvalidToken",
    "NotFound",
    "PlanThrottled",
    "QuotaExhausted",
    "ReleaseUntrusted",
    "ReleaseUnverifiable",
    "SignerError",
    "SigningUnavailable",
    "TenantMismatch",
    "UnsupportedPredicateType",
    "UseDpopNonce",
    "on_refusal",
]
