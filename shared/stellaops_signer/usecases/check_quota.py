"""check_quota: a licence's plan, limits and usage (spec §3.4); quota steps of SigningPipeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stellaops_signer.domain.authorization import SIGN_SCOPE, VERIFY_SCOPE, authorize
from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.errors import ArtifactTooLarge, InvalidRequest
from stellaops_signer.domain.quota import (
    open_reservation,
    rate_limit_headers,
    seal_reservation,
    seconds_to_next_day,
)
from stellaops_signer.ports import Clock, QuotaStore
from stellaops_signer.usecases.entitlement import EntitlementChecker
from stellaops_signer.usecases.meta import RequestMeta

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonObject, JsonValue


class QuotaDesk:
    def __init__(
        self,
        *,
        entitlements: EntitlementChecker,
        quotas: QuotaStore,
        clock: Clock,
        reservation_key: Callable[[], bytes],
    ) -> None:
        self._entitlements = entitlements
        self._quotas = quotas
        self._clock = clock
        self._reservation_key = reservation_key

    def status(
        self, principal: Principal, poe: str | None, meta: RequestMeta
    ) -> tuple[JsonObject, dict[str, str]]:
        """``GET /api/v1/signer/quota``: the answer and its ``RateLimit-*`` headers (spec §3.6).
        Raises EntitlementDenied, TenantMismatch, InsufficientScope."""
        authorize(principal, (SIGN_SCOPE, VERIFY_SCOPE), meta.tenant_header)
        entitlement = self._entitlements.check(poe, principal)
        plan = entitlement.plan
        usage = self._quotas.usage(entitlement.license_id, plan)
        now = self._clock.now()
        reset_in = seconds_to_next_day(now)
        daily_at = datetime.fromtimestamp(int(now) + reset_in, UTC).isoformat().replace("+00:00", "Z")
        headers = rate_limit_headers(plan, usage["qps"], usage["daily"], now)
        return {
            "plan": entitlement.plan_name,
            "licenseId": entitlement.license_id,
            "validReleaseYear": entitlement.valid_release_year,
            "limits": {
                "qps": plan.qps,
                "concurrency": plan.concurrency,
                "maxArtifactBytes": plan.maxArtifactBytes,
                "dailySignatures": plan.dailySignatures,
            },
            "usage": {"qps": usage["qps"], "inFlight": usage["inFlight"], "daily": usage["daily"]},
            "remaining": {
                "qps": max(0, plan.qps - usage["qps"]),
                "concurrency": max(0, plan.concurrency - usage["inFlight"]),
                "daily": max(0, plan.dailySignatures - usage["daily"]),
            },
            "resets": {
                "qpsInSeconds": 1,
                "dailyInSeconds": reset_in,
                "dailyAt": daily_at,
            },
        }, headers

    def step(
        self, principal: Principal, action: object, *, poe: object, artifact_bytes: object, sealed: JsonValue
    ) -> JsonObject:
        """The pipeline's CheckQuota (``reserve``) or ReleaseQuota (``release``) step; raises
        InvalidRequest for any other action."""
        if action == "reserve":
            value = poe.get("value") if isinstance(poe, dict) else None
            return self.reserve(principal, value if isinstance(value, str) else None, artifact_bytes)
        if action == "release":
            return self.release(principal, sealed)
        raise InvalidRequest("action must be reserve or release")

    def reserve(self, principal: Principal, poe: str | None, artifact_bytes: object) -> JsonObject:
        """The pipeline's CheckQuota step: entitlement and a sealed reservation SignDsse then uses
        (once). Raises InvalidRequest, InsufficientScope, EntitlementDenied, ArtifactTooLarge,
        PlanThrottled, QuotaExhausted."""
        authorize(principal, (SIGN_SCOPE,), None)
        if type(artifact_bytes) is not int or artifact_bytes < 0:
            raise InvalidRequest("artifactBytes must be a non-negative integer")
        entitlement = self._entitlements.check(poe, principal)
        limit = entitlement.plan.maxArtifactBytes
        if artifact_bytes > limit:
            raise ArtifactTooLarge(f"the request is {artifact_bytes} bytes; the plan allows {limit}")
        reservation = self._quotas.reserve(entitlement.license_id, entitlement.plan)
        sealed = seal_reservation(reservation, principal.tenant, self._reservation_key())
        return {"reservation": sealed, "plan": entitlement.plan_name}

    def release(self, principal: Principal, sealed: JsonValue) -> JsonObject:
        """The pipeline's compensation: give back what a failed execution reserved. Only an authentic
        reservation of the caller's tenant, and only once: ``released`` says whether this call gave
        the units back (False: given back before, or its signing succeeded). Raises InvalidRequest."""
        reservation = open_reservation(sealed, principal.tenant, self._reservation_key())
        return {"released": self._quotas.release(reservation, refund=True)}


__all__ = ["QuotaDesk"]
