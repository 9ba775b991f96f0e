"""The DPoP replay cache: one conditional put per proof, with a TTL past its acceptance window."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from stellaops_signer.adapters.aws import AWS_FAILURES, is_conditional_failure
from stellaops_signer.domain.errors import InvalidDpopProof

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from mypy_boto3_dynamodb.client import DynamoDBClient


class DynamoDbReplayStore:
    """``attribute_not_exists(pk)``: of two requests racing with one proof, exactly one wins."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def remember(self, key: str, expires_at: int) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": f"dpop#{key}"}, "expiresAt": {"N": str(expires_at)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except AWS_FAILURES as exc:  # fail closed: an unchecked proof is refused
            if is_conditional_failure(exc):
                raise InvalidDpopProof("the DPoP proof was already used") from None
            raise InvalidDpopProof("the DPoP proof could not be checked for replay") from exc


class InMemoryReplayStore:
    """A fake with the same contract (thread-safe; expiry is DynamoDB's job, not checked here)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, key: str, expires_at: int) -> None:
        with self._lock:
            if key in self._seen:
                raise InvalidDpopProof("the DPoP proof was already used")
            self._seen.add(key)


__all__ = ["DynamoDbReplayStore", "InMemoryReplayStore"]
