"""Plan quotas in DynamoDB (spec §5.2): conditional writes only, no read-then-write.

Per licence: a counter item per one-second window (QPS), a counter item per UTC day, and
``concurrency`` lease slots that a request takes with a conditional put and that free
themselves when their lease expires (a crashed invocation leaks a slot for LEASE_SECONDS at
most). Every item carries a TTL. A refused or failed request gives back what it took.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from stellaops_signer.adapters.aws import AWS_FAILURES, is_conditional_failure
from stellaops_signer.domain.errors import InvalidRequest, PlanThrottled, QuotaExhausted, SigningUnavailable
from stellaops_signer.domain.quota import LEASE_SECONDS, Plan, Reservation, seconds_to_next_day, utc_day
from stellaops_signer.observability import logger
from stellaops_signer.ports import Clock


class DynamoDbQuotaStore:
    def __init__(self, client: Any, table: str, clock: Clock) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    def reserve(self, license_id: str, plan: Plan) -> Reservation:
        """Take one QPS unit, one daily unit and one lease; raises PlanThrottled or QuotaExhausted,
        or SigningUnavailable when the store fails — having given back whatever it took before."""
        now = self._clock.now()
        second, day = int(now), utc_day(now)
        qps_key, day_key = f"qps#{license_id}#{second}", f"day#{license_id}#{day}"
        qps_used = self._count(qps_key, plan.qps, expires_at=second + 60)
        if qps_used is None:
            raise PlanThrottled("the plan's requests per second are used up", headers=_retry(1, plan.qps))
        taken = [qps_key]
        try:
            daily_used = self._count(day_key, plan.dailySignatures, expires_at=second + 2 * 86400)
            if daily_used is None:
                reset = seconds_to_next_day(now)
                headers = _retry(reset, plan.dailySignatures)
                raise QuotaExhausted("the plan's daily signatures are used up", headers=headers)
            taken.append(day_key)
            lease_id = str(uuid.uuid4())
            slot = self._lease(license_id, plan.concurrency, lease_id, now)
            if slot is None:
                headers = _retry(1, plan.concurrency)
                raise PlanThrottled("the plan's concurrent signings are all in flight", headers=headers)
        except (PlanThrottled, QuotaExhausted, SigningUnavailable):
            for key in taken:
                self._refund(key)
            raise
        return Reservation(license_id, second, day, slot, lease_id, qps_used, daily_used)

    def claim(self, reservation: Reservation) -> None:
        """Mark a reservation handed in by a pipeline step as being used for a signing: once only,
        and never after it was given back (a conditional update of its lease)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._lease_key(reservation),
                UpdateExpression="SET claimed = :yes",
                ConditionExpression=(
                    "leaseId = :id AND attribute_not_exists(claimed) AND attribute_not_exists(done)"
                ),
                ExpressionAttributeValues={":id": {"S": reservation.lease_id}, ":yes": {"BOOL": True}},
            )
        except AWS_FAILURES as error:
            if is_conditional_failure(error):
                raise InvalidRequest("the reservation was already used, given back or has lapsed") from None
            raise SigningUnavailable("the quota store is unavailable") from error

    def release(self, reservation: Reservation, *, refund: bool) -> bool:
        """Close the reservation and free its lease; with ``refund`` also give back its QPS and daily
        units. Idempotent: only the first release of a reservation changes anything (a conditional
        update), so a retried compensation or a refund after a successful signing cannot mint quota.
        True when this call closed it."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._lease_key(reservation),
                UpdateExpression="SET done = :how",
                ConditionExpression="leaseId = :id AND attribute_not_exists(done)",
                ExpressionAttributeValues={
                    ":id": {"S": reservation.lease_id},
                    ":how": {"S": "refunded" if refund else "signed"},
                },
            )
        except AWS_FAILURES as error:
            if not is_conditional_failure(error):  # else: closed before, or the lease lapsed and is reused
                logger.warning(
                    "reservation release failed; its lease expires by itself", extra={"code": "quota"}
                )
            return False
        if refund:
            self._refund(f"qps#{reservation.license_id}#{reservation.second}")
            self._refund(f"day#{reservation.license_id}#{reservation.day}")
        return True

    @staticmethod
    def _lease_key(reservation: Reservation) -> dict[str, Any]:
        return {"pk": {"S": f"lease#{reservation.license_id}#{reservation.lease_slot}"}}

    def usage(self, license_id: str, plan: Plan) -> dict[str, int]:
        """Current counts (one consistent batch read): QPS this second, in-flight leases, today."""
        now = self._clock.now()
        keys = [f"qps#{license_id}#{int(now)}", f"day#{license_id}#{utc_day(now)}"]
        keys += [f"lease#{license_id}#{slot}" for slot in range(min(plan.concurrency, 98))]
        try:
            answer = self._client.batch_get_item(
                RequestItems={self._table: {"Keys": [{"pk": {"S": k}} for k in keys], "ConsistentRead": True}}
            )
        except AWS_FAILURES as exc:
            raise SigningUnavailable("the quota store is unavailable") from exc
        try:
            items = {i["pk"]["S"]: i for i in answer.get("Responses", {}).get(self._table, [])}
        except (AttributeError, KeyError, TypeError):
            raise SigningUnavailable("the quota store answered something malformed") from None

        def count(key: str) -> int:
            return int(items[key]["n"]["N"]) if key in items else 0

        in_flight = sum(
            1
            for k in keys[2:]
            if k in items and int(items[k]["expiresAt"]["N"]) > now and "done" not in items[k]
        )
        return {"qps": count(keys[0]), "daily": count(keys[1]), "inFlight": in_flight}

    # --- conditional writes --------------------------------------------------------------

    def _count(self, key: str, limit: int, *, expires_at: int) -> int | None:
        """Add one unless ``limit`` is reached; the new count, or None when refused."""
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :one SET expiresAt = if_not_exists(expiresAt, :exp)",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(expires_at)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except AWS_FAILURES as error:
            if is_conditional_failure(error):
                return None
            raise SigningUnavailable("the quota store is unavailable") from error
        try:
            return int(answer["Attributes"]["n"]["N"])
        except (KeyError, TypeError, ValueError):  # whether the unit was taken is unknown: not given back
            raise SigningUnavailable("the quota store answered something malformed") from None

    def _lease(self, license_id: str, slots: int, lease_id: str, now: float) -> int | None:
        """Take a free or expired slot, starting at a random one; None when all are held."""
        start = random.randrange(slots)  # noqa: S311 - spreading contention, not a secret
        for offset in range(slots):
            slot = (start + offset) % slots
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        "pk": {"S": f"lease#{license_id}#{slot}"},
                        "leaseId": {"S": lease_id},
                        "expiresAt": {"N": str(int(now) + LEASE_SECONDS)},
                    },
                    # free once closed or expired: the rule usage() counts by
                    ConditionExpression=(
                        "attribute_not_exists(pk) OR attribute_exists(done) OR expiresAt <= :now"
                    ),
                    ExpressionAttributeValues={":now": {"N": str(int(now))}},
                )
                return slot
            except AWS_FAILURES as error:
                if not is_conditional_failure(error):
                    raise SigningUnavailable("the quota store is unavailable") from error
        return None

    def _refund(self, key: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :minus",
                ConditionExpression="n > :zero",
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            )
        except AWS_FAILURES as error:
            if not is_conditional_failure(error):
                logger.warning("quota refund failed", extra={"code": "quota"})


def _retry(seconds: int, limit: int) -> dict[str, str]:
    """A refusal's headers: the quota that ran out, nothing left of it, and when it resets."""
    return {
        "Retry-After": str(seconds),
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(seconds),
    }


class InMemoryQuotaStore:
    """A fake with the same contract (thread-safe): counters and leases in dictionaries."""

    def __init__(self, clock: Clock) -> None:
        import threading

        self._clock = clock
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        #: "<licence>#<slot>" → [lease id, expiry, claimed, done]
        self.leases: dict[str, list[Any]] = {}

    def _free(self, key: str, now: float) -> bool:
        lease = self.leases.get(key)
        return lease is None or lease[3] or lease[1] <= int(now)

    def reserve(self, license_id: str, plan: Plan) -> Reservation:
        now = self._clock.now()
        second, day = int(now), utc_day(now)
        qps_key, day_key = f"qps#{license_id}#{second}", f"day#{license_id}#{day}"
        with self._lock:
            if self.counts.get(qps_key, 0) >= plan.qps:
                raise PlanThrottled("the plan's requests per second are used up", headers=_retry(1, plan.qps))
            if self.counts.get(day_key, 0) >= plan.dailySignatures:
                reset = seconds_to_next_day(now)
                headers = _retry(reset, plan.dailySignatures)
                raise QuotaExhausted("the plan's daily signatures are used up", headers=headers)
            slot = next(
                (slot for slot in range(plan.concurrency) if self._free(f"{license_id}#{slot}", now)), None
            )
            if slot is None:
                headers = _retry(1, plan.concurrency)
                raise PlanThrottled("the plan's concurrent signings are all in flight", headers=headers)
            lease_id = str(uuid.uuid4())
            self.leases[f"{license_id}#{slot}"] = [lease_id, int(now) + LEASE_SECONDS, False, False]
            self.counts[qps_key] = self.counts.get(qps_key, 0) + 1
            self.counts[day_key] = self.counts.get(day_key, 0) + 1
            return Reservation(
                license_id, second, day, slot, lease_id, self.counts[qps_key], self.counts[day_key]
            )

    def _lease(self, reservation: Reservation) -> list[Any] | None:
        lease = self.leases.get(f"{reservation.license_id}#{reservation.lease_slot}")
        return lease if lease is not None and lease[0] == reservation.lease_id else None

    def claim(self, reservation: Reservation) -> None:
        with self._lock:
            lease = self._lease(reservation)
            if lease is None or lease[2] or lease[3]:
                raise InvalidRequest("the reservation was already used, given back or has lapsed")
            lease[2] = True

    def release(self, reservation: Reservation, *, refund: bool) -> bool:
        with self._lock:
            lease = self._lease(reservation)
            if lease is None or lease[3]:
                return False
            lease[3] = True
            if refund:
                for counter in (
                    f"qps#{reservation.license_id}#{reservation.second}",
                    f"day#{reservation.license_id}#{reservation.day}",
                ):
                    if self.counts.get(counter, 0) > 0:
                        self.counts[counter] -= 1
            return True

    def usage(self, license_id: str, plan: Plan) -> dict[str, int]:
        now = self._clock.now()
        with self._lock:
            in_flight = sum(
                1 for slot in range(plan.concurrency) if not self._free(f"{license_id}#{slot}", now)
            )
            return {
                "qps": self.counts.get(f"qps#{license_id}#{int(now)}", 0),
                "daily": self.counts.get(f"day#{license_id}#{utc_day(now)}", 0),
                "inFlight": in_flight,
            }
