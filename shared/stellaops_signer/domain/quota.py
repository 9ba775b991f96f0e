"""Plans and their quotas (spec §5.2): the arithmetic of windows and resets, no storage."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stellaops_signer.domain.errors import ConfigurationError, InvalidRequest
from stellaops_signer.domain.jcs import canonicalize

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonObject, JsonValue

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
    def parse(cls, name: str, raw: JsonValue) -> Plan:
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


_RESERVATION_FIELDS = {f.name: f.type for f in fields(Reservation)}
_MAC_CONTEXT = b"stellaops-signer-reservation-v1|"


def _mac(key: bytes, tenant: str, values: Mapping[str, JsonValue]) -> str:
    material = canonicalize({"tenant": tenant, **values})
    return hmac.new(key, _MAC_CONTEXT + material, hashlib.sha256).hexdigest()


def seal_reservation(reservation: Reservation, tenant: str, key: bytes) -> JsonObject:
    """A reservation as it travels between pipeline steps (spec §5.2, §6): its fields, the tenant
    it was taken for and an HMAC-SHA256 over both, so that it is evidence rather than a claim."""
    values = asdict(reservation)
    return {**values, "tenant": tenant, "mac": _mac(key, tenant, values)}


def open_reservation(sealed: JsonValue, tenant: str, key: bytes) -> Reservation:
    """The reservation a pipeline step handed on, if authentic and taken for ``tenant``;
    raises InvalidRequest for a forged, altered, foreign or malformed one."""
    if not isinstance(sealed, Mapping) or set(sealed) != {*_RESERVATION_FIELDS, "tenant", "mac"}:
        raise InvalidRequest("the reservation is malformed")
    values = {name: sealed[name] for name in _RESERVATION_FIELDS}
    for name, value in values.items():
        wanted = int if _RESERVATION_FIELDS[name] == "int" else str
        if type(value) is not wanted:
            raise InvalidRequest("the reservation is malformed")
    mac, claimed_tenant = sealed["mac"], sealed["tenant"]
    if not isinstance(mac, str) or not isinstance(claimed_tenant, str):
        raise InvalidRequest("the reservation is malformed")
    if not hmac.compare_digest(mac, _mac(key, claimed_tenant, values)):
        raise InvalidRequest("the reservation is not authentic")
    if claimed_tenant != tenant:
        raise InvalidRequest("the reservation was taken for another tenant")
    return Reservation(**values)


def utc_day(now: float) -> str:
    """The UTC date of ``now`` (``YYYY-MM-DD``): the daily quota's window."""
    return _utc_date(int(now // 86400))  # POSIX days are 86,400 seconds


@functools.lru_cache(maxsize=4)
def _utc_date(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


def seconds_to_next_day(now: float) -> int:
    """Seconds until the next UTC midnight (the daily quota's reset), at least 1, rounded up from
    the millisecond. In whole microseconds, as ``datetime`` counts them (POSIX days are 86,400 s)."""
    whole = int(now // 1)
    left = (86400 - whole % 86400) * 1_000_000 - round((now - whole) * 1_000_000)
    return max(1, int(left / 1_000_000 + 0.999))


def rate_limit_policy(plan: Plan) -> str:
    """``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers-07 §2.1): every policy of the plan,
    per second and per UTC day."""
    return f'{plan.qps};w=1;comment="per second", {plan.dailySignatures};w=86400;comment="per day"'


def rate_limit_headers(plan: Plan, qps_used: int, daily_used: int, now: float) -> dict[str, str]:
    """``RateLimit-Limit/Remaining/Reset`` of the policy closest to running out (the smaller share
    left), and ``RateLimit-Policy`` naming them all (spec §3.6): after a signing, from what its
    reservation counted; on ``/quota``, from the usage it reports."""
    per_second = (plan.qps, max(0, plan.qps - qps_used), 1)
    per_day = (plan.dailySignatures, max(0, plan.dailySignatures - daily_used), seconds_to_next_day(now))
    limit, remaining, reset = min(per_second, per_day, key=lambda policy: policy[1] / policy[0])
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset),
        "RateLimit-Policy": rate_limit_policy(plan),
    }


def refusal_headers(seconds: int, limit: int, plan: Plan) -> dict[str, str]:
    """A 429's headers: the quota that ran out, nothing left of it, when it resets, every policy."""
    return {
        "Retry-After": str(seconds),
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(seconds),
        "RateLimit-Policy": rate_limit_policy(plan),
    }


def policy_block(plan_name: str, license_id: str, plan: Plan, reservation: Reservation) -> JsonObject:
    """The ``policy`` of the §3.2 answer."""
    return {
        "plan": plan_name,
        "licenseId": license_id,
        "maxArtifactBytes": plan.maxArtifactBytes,
        "qpsLimit": plan.qps,
        "qpsRemaining": max(0, plan.qps - reservation.qps_used),
        "dailyRemaining": max(0, plan.dailySignatures - reservation.daily_used),
    }


__all__ = [
    "LEASE_SECONDS",
    "Plan",
    "Reservation",
    "open_reservation",
    "policy_block",
    "rate_limit_headers",
    "rate_limit_policy",
    "refusal_headers",
    "seal_reservation",
    "seconds_to_next_day",
    "utc_day",
]
