"""Entitlement: the PoE verified, optionally confirmed online, and the plan it grants (spec §5.1)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.entitlement import Entitlement, verify_poe
from stellaops_signer.domain.errors import EntitlementDenied
from stellaops_signer.domain.quota import Plan
from stellaops_signer.domain.tokens import CompactJws, SignatureCache, check_time_claims
from stellaops_signer.ports import Cache, Clock, KeySetSource

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonObject


class EntitlementChecker:
    """Verifies PoEs against the Licensing keys; with an introspection endpoint, confirms them
    online (RFC 7662 style) and caches the answer by the PoE's identity (spec §5.1) for at most
    ``min(PoeCacheTtlSeconds, exp − now)``."""

    def __init__(
        self,
        *,
        keys: KeySetSource,
        issuer: str,
        plans: Mapping[str, Plan],
        clock: Clock,
        introspect: Callable[[str], bool] | None = None,
        cache: Cache | None = None,
        cache_ttl: int = 300,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._plans = plans
        self._clock = clock
        self._introspect = introspect
        self._cache = cache
        self._cache_ttl = cache_ttl
        self._local: dict[str, tuple[float, bool]] = {}
        self._signatures = SignatureCache()
        self._identities: dict[str, str] = {}
        #: (PoE, the caller's identity) → (its verified claims, the entitlement read from them).
        self._read: dict[tuple[str, str, str, str, str], tuple[JsonObject, Entitlement]] = {}
        self._lock = threading.Lock()

    def check(self, poe: str | None, principal: Principal) -> Entitlement:
        """Raises EntitlementDenied, TenantMismatch or EntitlementUnavailable."""
        if not poe:
            raise EntitlementDenied("a Proof-of-Entitlement is required")
        jws = CompactJws.parse(poe, EntitlementDenied)
        keys = self._keys.key_set(jws.kid)  # raises EntitlementUnavailable when it cannot be had
        now = self._clock.now()
        verified = self._signatures.verify(jws, poe, keys, now, EntitlementDenied)
        # What the PoE grants this caller depends on its verified claims and the caller's identity;
        # only the time rules depend on the moment, and they are applied on every use.
        caller = (poe, principal.tenant, principal.installation, principal.binding, principal.sender_key)
        read = self._read.get(caller)
        if read is not None and read[0] is verified[1]:
            check_time_claims(verified[1], now, max_lifetime=None, error=EntitlementDenied)
            entitlement = read[1]
        else:
            entitlement = verify_poe(
                poe,
                keys,
                issuer=self._issuer,
                now=now,
                principal=principal,
                plans=self._plans,
                parsed=jws,
                verified=verified,
                identity=self._identities.get(poe),
            )
            if len(self._read) >= 4096:
                self._read.clear()
            self._read[caller] = (verified[1], entitlement)
            if len(self._identities) > 4096:
                self._identities.clear()
            self._identities[poe] = entitlement.poe_sha256  # a PoE's identity never changes
        if self._introspect is not None and not self._active(poe, entitlement, now):
            raise EntitlementDenied("the licence is revoked or inactive")
        return entitlement

    def _active(self, poe: str, entitlement: Entitlement, now: float) -> bool:
        key = f"poe#{entitlement.poe_sha256}"
        ttl = int(min(self._cache_ttl, entitlement.expires_at - now))
        with self._lock:
            local = self._local.get(key)
        if local and local[0] > now:
            return local[1]
        cached = self._cache.get(key) if self._cache else None
        if cached is not None:
            return cached.get("active") is True
        assert self._introspect is not None
        active = self._introspect(poe)  # raises EntitlementUnavailable: and nothing valid is cached
        if ttl > 0:
            if self._cache:
                self._cache.put(key, {"active": active}, ttl)
            with self._lock:
                self._local[key] = (now + ttl, active)
        return active


__all__ = ["EntitlementChecker"]
