"""Plan quotas in DynamoDB (spec §5.2): one item per licence, changed by conditional writes only.

The item ``licence#<id>`` holds the UTC day and its count (``day``, ``n``), the current second
and its count (``sec``, ``q``), and ``concurrency`` lease slots (``l<i>`` lease id, ``e<i>`` its
expiry, ``c<i>`` set once a pipeline's signing claimed it). A reservation is one ``UpdateItem``
whose condition checks all three limits at once (atomic across every instance, decision 0014):
it assumes what it last saw of the item (same day, same second, a free slot) and, when the
condition fails, reads the item's state from the failure itself (``ALL_OLD``) to either refuse
with the limit that is reached or try again with the right assumption. A lease frees itself once
expired (a crashed invocation holds a slot for LEASE_SECONDS at most). Releasing removes the
slot — only the call that finds it gives anything back — so retries and compensations cannot
mint quota. The item carries a TTL, renewed by every reservation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.adapters.ids import random_id
from stellaops_signer.domain.errors import InvalidRequest, PlanThrottled, QuotaExhausted, SigningUnavailable
from stellaops_signer.domain.quota import (
    LEASE_SECONDS,
    Plan,
    Reservation,
    refusal_headers,
    seconds_to_next_day,
    utc_day,
)
from stellaops_signer.domain.tokens import CLOCK_SKEW_SECONDS
from stellaops_signer.observability import logger
from stellaops_signer.ports import Clock

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        UpdateItemInputTypeDef,
        UpdateItemOutputTypeDef,
        UpdateTypeDef,
    )

#: How long an unused licence's item outlives its last reservation.
ITEM_TTL_SECONDS = 2 * 86400
#: Conditional attempts before a reservation gives up (each failure teaches the next one).
ATTEMPTS = 8


def _lost(error: Exception) -> dict[str, AttributeValueTypeDef] | None:
    """The item as it was when a conditional write lost (``ALL_OLD``), or None for another error."""
    response = getattr(error, "response", None) or {}
    if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
        return None
    item: dict[str, AttributeValueTypeDef] = response.get("Item") or {}
    return item


def _number(item: Mapping[str, AttributeValueTypeDef], name: str) -> int:
    try:
        return int(item[name]["N"])
    except (KeyError, TypeError, ValueError):
        return 0


def _text(item: Mapping[str, AttributeValueTypeDef], name: str) -> str:
    value = item.get(name)
    return str(value.get("S", "")) if isinstance(value, dict) else ""


class DynamoDbQuotaStore:
    def __init__(self, client: DynamoDBClient, table: str, clock: Clock) -> None:
        self._client = client
        self._table = table
        self._clock = clock
        #: licence → (day, second) of this container's last reservation: the best guess of the item's
        #: window, so that the first signing of a new second writes once instead of failing once.
        self._windows: dict[str, tuple[str, int]] = {}

    @staticmethod
    def key(license_id: str) -> dict[str, AttributeValueTypeDef]:
        return {"pk": {"S": f"licence#{license_id}"}}

    def reserve(self, license_id: str, plan: Plan) -> Reservation:
        """Take one unit of the second, one of the day and a lease slot, in one conditional write;
        raises PlanThrottled or QuotaExhausted (with their headers), or SigningUnavailable."""
        now = self._clock.now()
        second, day = int(now), utc_day(now)
        lease_id = random_id()
        # Not read: guessed from this container's last reservation (else the common case, this same
        # second); a wrong guess fails its condition and answers the item, which the retry reads.
        seen: dict[str, AttributeValueTypeDef] | None = None
        known = self._windows.get(license_id)
        for _ in range(ATTEMPTS):
            slot = self._free_slot(seen, plan.concurrency, second)
            if slot is None:
                raise PlanThrottled(
                    "the plan's concurrent signings are all in flight",
                    headers=refusal_headers(1, plan.concurrency, plan),
                )
            if seen is None:
                same_day = known is None or known[0] == day
                same_second = same_day and (known is None or known[1] == second)
            else:
                same_day = _text(seen, "day") == day
                same_second = same_day and _number(seen, "sec") == second
            if same_day and _number(seen or {}, "n") >= plan.dailySignatures:
                headers = refusal_headers(seconds_to_next_day(now), plan.dailySignatures, plan)
                raise QuotaExhausted("the plan's daily signatures are used up", headers=headers)
            if same_second and _number(seen or {}, "q") >= plan.qps:
                raise PlanThrottled(
                    "the plan's requests per second are used up", headers=refusal_headers(1, plan.qps, plan)
                )
            try:
                answer = self._take(license_id, plan, slot, lease_id, day, second, same_day, same_second)
            except AWS_FAILURES as error:
                seen = _lost(error)
                if seen is None:
                    raise SigningUnavailable("the quota store is unavailable") from error
                ahead = _number(seen, "sec") - second
                if 0 < ahead <= CLOCK_SKEW_SECONDS and _text(seen, "day") >= day:
                    # Another container's clock already opened a later window: count this request
                    # there (a window that went by cannot be written back to). A clock further off
                    # than the skew we accept is not followed: the reservation then fails closed.
                    day, second = _text(seen, "day"), _number(seen, "sec")
                continue
            self._windows[license_id] = (day, second)
            try:
                attributes = answer["Attributes"]
                return Reservation(
                    license_id,
                    second,
                    day,
                    slot,
                    lease_id,
                    int(attributes["q"]["N"]),
                    int(attributes["n"]["N"]),
                )
            except (KeyError, TypeError, ValueError):  # taken, but the answer is unreadable: not given back
                raise SigningUnavailable("the quota store answered something malformed") from None
        raise SigningUnavailable("the quota store is too contended to reserve now")

    @staticmethod
    def _free_slot(seen: Mapping[str, AttributeValueTypeDef] | None, slots: int, now: int) -> int | None:
        """A slot to try: any (at random) when nothing is known, else one free or expired in ``seen``."""
        if seen is None:
            return random.randrange(slots)  # noqa: S311 - spreading contention, not a secret
        free = [i for i in range(slots) if f"l{i}" not in seen or _number(seen, f"e{i}") <= now]
        return random.choice(free) if free else None  # noqa: S311

    def _take(
        self,
        license_id: str,
        plan: Plan,
        slot: int,
        lease_id: str,
        day: str,
        second: int,
        same_day: bool,
        same_second: bool,
    ) -> UpdateItemOutputTypeDef:
        values: dict[str, AttributeValueTypeDef] = {
            ":one": {"N": "1"},
            ":day": {"S": day},
            ":sec": {"N": str(second)},
            ":dl": {"N": str(plan.dailySignatures)},
            ":ql": {"N": str(plan.qps)},
            ":id": {"S": lease_id},
            ":exp": {"N": str(second + LEASE_SECONDS)},
            ":now": {"N": str(second)},
            ":ttl": {"N": str(second + ITEM_TTL_SECONDS)},
        }
        free = f"(attribute_not_exists(l{slot}) OR e{slot} <= :now)"
        lease = f"l{slot} = :id, e{slot} = :exp, expiresAt = :ttl"
        if same_second:  # the common case: this second and this day are under way
            condition = f"#day = :day AND n < :dl AND sec = :sec AND q < :ql AND {free}"
            update = f"SET n = n + :one, q = q + :one, {lease} REMOVE c{slot}"
        elif same_day:  # the first request of a new second
            condition = f"#day = :day AND n < :dl AND sec < :sec AND {free}"
            update = f"SET n = n + :one, sec = :sec, q = :one, {lease} REMOVE c{slot}"
        else:  # the first request of the licence, or of a new day
            condition = f"(attribute_not_exists(#day) OR #day < :day) AND {free}"
            update = f"SET #day = :day, n = :one, sec = :sec, q = :one, {lease} REMOVE c{slot}"
            del values[":dl"], values[":ql"]
        if not same_second and same_day:
            del values[":ql"]
        return self._client.update_item(
            TableName=self._table,
            Key=self.key(license_id),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#day": "day"},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def claim(self, reservation: Reservation) -> None:
        """Mark a reservation handed in by a pipeline step as being used for a signing: once only,
        and never after it was given back or its lease was taken by another."""
        slot = reservation.lease_slot
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self.key(reservation.license_id),
                UpdateExpression=f"SET c{slot} = :yes",
                ConditionExpression=f"l{slot} = :id AND attribute_not_exists(c{slot})",
                ExpressionAttributeValues={":id": {"S": reservation.lease_id}, ":yes": {"BOOL": True}},
            )
        except AWS_FAILURES as error:
            if _lost(error) is not None:
                raise InvalidRequest("the reservation was already used, given back or has lapsed") from None
            raise SigningUnavailable("the quota store is unavailable") from error

    def release_update(self, reservation: Reservation) -> UpdateTypeDef:
        """The write that frees a signed reservation's lease (for a transaction with the audit put)."""
        slot = reservation.lease_slot
        return {
            "TableName": self._table,
            "Key": self.key(reservation.license_id),
            "UpdateExpression": f"REMOVE l{slot}, e{slot}, c{slot}",
            "ConditionExpression": f"l{slot} = :id",
            "ExpressionAttributeValues": {":id": {"S": reservation.lease_id}},
        }

    def release(self, reservation: Reservation, *, refund: bool) -> bool:
        """Close the reservation and free its lease; with ``refund`` also give back its units (those
        of its day and second, while they last). Only the call that finds the lease changes anything:
        a retried compensation or a refund after a successful signing cannot mint quota. True when
        this call closed it."""
        if not refund:
            try:
                self._client.update_item(**self.release_update(reservation))
            except AWS_FAILURES as error:
                if _lost(error) is None:
                    logger.warning("lease release failed; it expires by itself", extra={"code": "quota"})
                return False
            return True
        slot, lease = reservation.lease_slot, {":id": {"S": reservation.lease_id}}
        free = f"REMOVE l{slot}, e{slot}, c{slot}"
        day = {":day": {"S": reservation.day}, ":one": {"N": "1"}}
        variants = (  # its units still count while their day (and second) last
            (
                f"l{slot} = :id AND #day = :day AND sec = :sec",
                f"SET n = n - :one, q = q - :one {free}",
                {**lease, **day, ":sec": {"N": str(reservation.second)}},
            ),
            (f"l{slot} = :id AND #day = :day", f"SET n = n - :one {free}", {**lease, **day}),
            (f"l{slot} = :id", free, lease),
        )
        for condition, update, values in variants:
            request: UpdateItemInputTypeDef = {
                "TableName": self._table,
                "Key": self.key(reservation.license_id),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
            if "#day" in condition:
                request["ExpressionAttributeNames"] = {"#day": "day"}
            try:
                self._client.update_item(**request)
            except AWS_FAILURES as error:
                seen = _lost(error)
                if seen is None:
                    logger.warning("quota refund failed", extra={"code": "quota"})
                    return False
                if _text(seen, f"l{slot}") != reservation.lease_id:
                    return False  # closed before, or its lease lapsed and was taken
                continue
            return True
        return False

    def usage(self, license_id: str, plan: Plan) -> dict[str, int]:
        """Current counts (one consistent read): this second, in-flight leases, today."""
        now = self._clock.now()
        try:
            answer = self._client.get_item(
                TableName=self._table, Key=self.key(license_id), ConsistentRead=True
            )
        except AWS_FAILURES as exc:
            raise SigningUnavailable("the quota store is unavailable") from exc
        item = answer.get("Item") or {}
        if not isinstance(item, dict):
            raise SigningUnavailable("the quota store answered something malformed")
        today = _text(item, "day") == utc_day(now)
        in_flight = sum(
            1 for i in range(plan.concurrency) if f"l{i}" in item and _number(item, f"e{i}") > int(now)
        )
        return {
            "qps": _number(item, "q") if today and _number(item, "sec") == int(now) else 0,
            "daily": _number(item, "n") if today else 0,
            "inFlight": in_flight,
        }


@dataclass(slots=True)
class _Lease:
    """A lease slot of the fake: who holds it, until when, whether a signing claimed it, whether it
    was closed."""

    lease_id: str
    expires_at: int
    claimed: bool = False
    done: bool = False


class InMemoryQuotaStore:
    """A fake with the same contract (thread-safe): counters and leases in dictionaries."""

    def __init__(self, clock: Clock) -> None:
        import threading

        self._clock = clock
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        #: "<licence>#<slot>" → its lease
        self.leases: dict[str, _Lease] = {}

    def _free(self, key: str, now: float) -> bool:
        lease = self.leases.get(key)
        return lease is None or lease.done or lease.expires_at <= int(now)

    def reserve(self, license_id: str, plan: Plan) -> Reservation:
        now = self._clock.now()
        second, day = int(now), utc_day(now)
        qps_key, day_key = f"qps#{license_id}#{second}", f"day#{license_id}#{day}"
        with self._lock:
            if self.counts.get(qps_key, 0) >= plan.qps:
                raise PlanThrottled(
                    "the plan's requests per second are used up", headers=refusal_headers(1, plan.qps, plan)
                )
            if self.counts.get(day_key, 0) >= plan.dailySignatures:
                reset = seconds_to_next_day(now)
                headers = refusal_headers(reset, plan.dailySignatures, plan)
                raise QuotaExhausted("the plan's daily signatures are used up", headers=headers)
            slot = next(
                (slot for slot in range(plan.concurrency) if self._free(f"{license_id}#{slot}", now)), None
            )
            if slot is None:
                headers = refusal_headers(1, plan.concurrency, plan)
                raise PlanThrottled("the plan's concurrent signings are all in flight", headers=headers)
            lease_id = random_id()
            self.leases[f"{license_id}#{slot}"] = _Lease(lease_id, int(now) + LEASE_SECONDS)
            self.counts[qps_key] = self.counts.get(qps_key, 0) + 1
            self.counts[day_key] = self.counts.get(day_key, 0) + 1
            return Reservation(
                license_id, second, day, slot, lease_id, self.counts[qps_key], self.counts[day_key]
            )

    def _lease(self, reservation: Reservation) -> _Lease | None:
        lease = self.leases.get(f"{reservation.license_id}#{reservation.lease_slot}")
        return lease if lease is not None and lease.lease_id == reservation.lease_id else None

    def claim(self, reservation: Reservation) -> None:
        with self._lock:
            lease = self._lease(reservation)
            if lease is None or lease.claimed or lease.done:
                raise InvalidRequest("the reservation was already used, given back or has lapsed")
            lease.claimed = True

    def release(self, reservation: Reservation, *, refund: bool) -> bool:
        with self._lock:
            lease = self._lease(reservation)
            if lease is None or lease.done:
                return False
            lease.done = True
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


__all__ = ["ATTEMPTS", "ITEM_TTL_SECONDS", "DynamoDbQuotaStore", "InMemoryQuotaStore"]
