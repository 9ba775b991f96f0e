"""Proof-of-Entitlement (spec §5.1): a licence token from Licensing, verified fail-closed.

The PoE decides the plan, the quotas and the release window. It is never stored or logged:
only its SHA-256 travels on (audit, caches).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.errors import EntitlementDenied, SignerError, TenantMismatch
from stellaops_signer.domain.jcs import CanonicalizationError, canonicalize
from stellaops_signer.domain.jose import JsonObject, JsonValue, strict_json
from stellaops_signer.domain.quota import Plan
from stellaops_signer.domain.tokens import CompactJws, KeySet, check_time_claims, verify_jws


@dataclass(frozen=True, slots=True)
class Entitlement:
    license_id: str
    customer_id: str
    plan_name: str
    plan: Plan
    valid_release_year: int
    expires_at: int
    poe_sha256: str

    def covers_release(self, release_year: int) -> None:
        """Raise EntitlementDenied when the verified scanner is newer than the licence allows."""
        if release_year > self.valid_release_year:
            raise EntitlementDenied(
                f"the licence covers releases up to {self.valid_release_year}, "
                f"the scanner is a {release_year} release"
            )


def poe_identity(header: Mapping[str, JsonValue], claims: Mapping[str, JsonValue]) -> str:
    """A PoE's identity (spec §5.1): SHA-256 of the RFC 8785 form of its protected header and claims.

    Not of its bytes: a re-encoded PoE (other member order or whitespace) or an (r, n−s) twin of
    its ECDSA signature — both valid, RFC 7518 §3.4 does not forbid a high S — is the same PoE in
    the introspection cache, the audit record and a revocation list.
    """
    return hashlib.sha256(canonicalize({"header": dict(header), "claims": dict(claims)})).hexdigest()


def poe_identity_of(poe: str) -> str:
    """The identity of a PoE that may not even parse (an audit record of its refusal): its
    ``poe_identity`` when it is a JWS of JSON objects, else the SHA-256 of its text."""
    try:
        jws = CompactJws.parse(poe, EntitlementDenied)
        claims = strict_json(jws.payload)
        if isinstance(claims, dict):
            return poe_identity(jws.header, claims)
    except (SignerError, ValueError, RecursionError, CanonicalizationError):
        pass
    return hashlib.sha256(poe.encode("utf-8", "replace")).hexdigest()


def verify_poe(
    poe: str,
    keys: KeySet,
    *,
    issuer: str,
    now: float,
    principal: Principal,
    plans: Mapping[str, Plan],
    parsed: CompactJws | None = None,
    verified: tuple[JsonObject, JsonObject] | None = None,
    identity: str | None = None,
) -> Entitlement:
    """Verify a PoE JWT for ``principal`` (``parsed``: its JWS, if already split; ``verified``: its
    signature's result, already checked; ``identity``: its identity, if already known); raises
    EntitlementDenied (or TenantMismatch)."""
    header, claims = verified or verify_jws(parsed or poe, keys, error=EntitlementDenied)
    if claims.get("iss") != issuer:
        raise EntitlementDenied("the PoE was issued by another issuer")
    _, exp = check_time_claims(claims, now, max_lifetime=None, error=EntitlementDenied)
    if claims.get("tid") != principal.tenant or claims.get("inst") != principal.installation:
        raise TenantMismatch("the PoE belongs to another tenant or installation")
    _check_confirmation(claims.get("cnf"), principal)
    license_id = _text(claims, "license_id")
    if claims.get("sub") != license_id:
        raise EntitlementDenied("the PoE subject must be its licence id")
    plan_name = _text(claims, "plan")
    plan = plans.get(plan_name)
    if plan is None:
        raise EntitlementDenied(f"plan {plan_name!r} is not offered by this installation")
    year = claims.get("valid_release_year")
    if type(year) is not int:
        raise EntitlementDenied("valid_release_year must be an integer")
    return Entitlement(
        license_id=license_id,
        customer_id=_text(claims, "customer_id"),
        plan_name=plan_name,
        plan=plan,
        valid_release_year=year,
        expires_at=exp,
        poe_sha256=identity or _identity(header, claims),
    )


def _identity(header: Mapping[str, JsonValue], claims: Mapping[str, JsonValue]) -> str:
    try:
        return poe_identity(header, claims)
    except CanonicalizationError:  # e.g. an integer beyond I-JSON: not a PoE we can name
        raise EntitlementDenied("the PoE claims are not I-JSON") from None


def _text(claims: Mapping[str, JsonValue], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise EntitlementDenied(f"the PoE needs {name}")
    return value


def _check_confirmation(cnf: JsonValue, principal: Principal) -> None:
    """An optional ``cnf`` binds the PoE to the sender key the request proved (spec §5.1)."""
    if cnf is None:
        return
    if not isinstance(cnf, dict) or len(cnf) != 1:
        raise EntitlementDenied("the PoE cnf must hold exactly one of jkt and x5t#S256")
    ((member, value),) = cnf.items()
    expected = {"jkt": "dpop", "x5t#S256": "mtls"}.get(member)
    if expected != principal.binding or not isinstance(value, str):
        raise EntitlementDenied("the PoE is bound to another kind of sender key")
    if not hmac.compare_digest(value, principal.sender_key):
        raise EntitlementDenied("the PoE is bound to another sender key")


__all__ = ["Entitlement", "poe_identity", "poe_identity_of", "verify_poe"]
