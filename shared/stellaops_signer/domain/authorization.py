"""What an authenticated caller may do: scopes and tenant (spec §3.1, §3.6 403s)."""

from __future__ import annotations

from collections.abc import Iterable

from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.errors import InsufficientScope, TenantMismatch

SIGN_SCOPE = "signer.sign"
VERIFY_SCOPE = "signer.verify"


def authorize(principal: Principal, any_of_scopes: Iterable[str], tenant_header: str | None) -> None:
    """Raise InsufficientScope unless the token holds one of the scopes; TenantMismatch if the
    ``X-StellaOps-Tenant`` header names another tenant than the token's ``tid``."""
    wanted = frozenset(any_of_scopes)
    if not principal.scopes & wanted:
        raise InsufficientScope("the token lacks the scope " + " or ".join(sorted(wanted)))
    check_tenant(principal, tenant_header)


def check_tenant(principal: Principal, tenant_header: str | None) -> None:
    """Raise TenantMismatch if ``X-StellaOps-Tenant`` names another tenant than the token's ``tid``
    (every route, ``/keys`` included: spec §3.1, §3.5)."""
    if tenant_header is not None and tenant_header != principal.tenant:
        raise TenantMismatch("X-StellaOps-Tenant differs from the token's tenant")


__all__ = ["SIGN_SCOPE", "VERIFY_SCOPE", "authorize", "check_tenant"]
