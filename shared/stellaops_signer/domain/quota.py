"""Plans and their quotas (spec §5.2): the arithmetic of windows and resets, no storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stellaops_signer.domain.errors import ConfigurationError

#: A lease outlives the longest signing (the functions time out at 29 s): a crashed
#: invocation frees its concurrency slot within this many seconds.
LEASE_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Plan:
    """A licence plan's limits (spec §4 ``Plans``, §5.2)."""

    qps: int
    concurrency: int
    maxArtifactBytes: int
    dailySignatures: int

    @classmethod
    def parse(cls, name: str, raw: Any) -> Plan:
        fields_ = ("qps", "concurrency", "maxArtifactBytes", "dailySignatures")
        if not isinstance(raw, dict) or set(raw) != set(fields_):
            raise ConfigurationError(f"SIGNER_PLANS: plan {name!r} needs exactly {', '.join(fields_)}")
        for field_ in fields_:
            value = raw[field_]
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"SIGNER_PLANS: {name}.{field_} must be a positive integer")
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one request holds: a QPS slot, a daily unit and a concurrency lease."""

    license_id: str
    second: int
    day: str
    lease_slot: int
    lease_id: str
    qps_used: int
    daily_used: int


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def seconds_to_next_day(now: float) -> int:
    """Seconds until the next UTC midnight (the daily quota's reset), at least 1."""
    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - moment).total_seconds() + 0.999))


def rate_limit_headers(plan: Plan, qps_used: int) -> dict[str, str]:
    """``RateLimit-Limit/Remaining/Reset`` for the QPS window (draft-ietf-httpapi-ratelimit-headers)."""
    return {
        "RateLimit-Limit": str(plan.qps),
        "RateLimit-Remaining": str(max(0, plan.qps - qps_used)),
        "RateLimit-Reset": "1",  # the QPS window is one second
    }


def policy_block(plan_name: str, license_id: str, plan: Plan, reservation: Reservation) -> dict[str, Any]:
    """The ``policy`` of the §3.2 answer."""
    return {
        "plan": plan_name,
        "licenseId": license_id,
        "maxArtifactBytes": plan.maxArtifactBytes,
        "qpsLimit": plan.qps,
        "qpsRemaining": max(0, plan.qps - reservation.qps_used),
        "dailyRemaining": max(0, plan.dailySignatures - reservation.daily_used),
    }
