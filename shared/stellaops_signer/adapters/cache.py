"""Verification caches in DynamoDB (release verdicts now; PoE introspection later)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.observability import logger
from stellaops_signer.ports import Clock

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from stellaops_signer.domain.jose import JsonObject


class DynamoDbCache:
    """JSON values with a TTL. A read or write failure is a miss, never an answer: callers
    then verify for real (fail closed by doing the work)."""

    def __init__(self, client: DynamoDBClient, table: str, clock: Clock) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    def get(self, key: str) -> JsonObject | None:
        try:
            item = self._client.get_item(TableName=self._table, Key={"pk": {"S": key}}).get("Item")
        except AWS_FAILURES:
            logger.warning("cache read failed", extra={"table": self._table})
            return None
        try:
            # DynamoDB deletes expired items lazily (within days): the expiry is checked here too.
            if not item or int(item["expiresAt"]["N"]) <= self._clock.now():
                return None
            value = json.loads(item["value"]["S"])
        except (KeyError, TypeError, ValueError):  # an item of another shape is no answer: a miss
            logger.warning("cache item malformed", extra={"table": self._table})
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: JsonObject, ttl_seconds: int) -> None:
        item = {
            "pk": {"S": key},
            "value": {"S": json.dumps(value, separators=(",", ":"))},
            "expiresAt": {"N": str(int(self._clock.now()) + ttl_seconds)},
        }
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except AWS_FAILURES:
            logger.warning("cache write failed", extra={"table": self._table})


class InMemoryCache:
    """A fake with the same contract."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.items: dict[str, tuple[float, JsonObject]] = {}

    def get(self, key: str) -> JsonObject | None:
        expires, value = self.items.get(key, (0.0, {}))
        return value if expires > self._clock.now() else None

    def put(self, key: str, value: JsonObject, ttl_seconds: int) -> None:
        self.items[key] = (self._clock.now() + ttl_seconds, value)


__all__ = ["DynamoDbCache", "InMemoryCache"]
