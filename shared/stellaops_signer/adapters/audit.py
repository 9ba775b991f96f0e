"""Audit records in DynamoDB, written once (a conditional put) before any bundle is returned."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.domain.audit import AuditRecord
from stellaops_signer.domain.errors import AuditUnavailable
from stellaops_signer.domain.quota import Reservation

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer, nor imported at cold start
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, PutTypeDef

    from stellaops_signer.adapters.quota import DynamoDbQuotaStore
    from stellaops_signer.ports import AuditLog, Clock, QuotaStore


def to_attribute(value: object) -> AttributeValueTypeDef:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"L": [to_attribute(v) for v in value]}
    return {"S": str(value)}


class DynamoDbAuditLog:
    def __init__(self, client: DynamoDBClient, table: str, *, retention_seconds: int, clock: Clock) -> None:
        self._client = client
        self._table = table
        self._retention = retention_seconds
        self._clock = clock

    def put_request(self, record: AuditRecord) -> PutTypeDef:
        """The write that stores ``record`` once (also as part of a transaction)."""
        item = {k: to_attribute(v) for k, v in record.as_item().items()}
        item["pk"] = {"S": record.audit_id}
        item["expiresAt"] = {"N": str(int(self._clock.now()) + self._retention)}
        return {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}

    def record(self, record: AuditRecord) -> None:
        try:
            self._client.put_item(**self.put_request(record))
        except AWS_FAILURES as exc:
            raise AuditUnavailable("the audit record could not be stored") from exc


class InMemoryAuditLog:
    """A fake with the same contract: records in order, refuses duplicate ids."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self._ids: set[str] = set()
        self.fail = False

    def record(self, record: AuditRecord) -> None:
        if self.fail or record.audit_id in self._ids:
            raise AuditUnavailable("the audit record could not be stored")
        self._ids.add(record.audit_id)
        self.records.append(record)


class DynamoDbSigningCommit:
    """A signing's last write (spec §5.2, §5.7): its ``allow`` record stored and its lease freed in one
    ``TransactWriteItems`` — one call instead of two, and never a freed lease without its record.

    When only the lease part fails (its reservation was closed or lapsed meanwhile), the record is
    stored alone: a record is never given up for a lease. Raises AuditUnavailable, with the lease
    still held (the caller's refusal path gives it back).
    """

    def __init__(self, client: DynamoDBClient, audit: DynamoDbAuditLog, quotas: DynamoDbQuotaStore) -> None:
        self._client = client
        self._audit = audit
        self._quotas = quotas

    def signed(self, record: AuditRecord, reservation: Reservation) -> None:
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {"Put": self._audit.put_request(record)},
                    {"Update": self._quotas.release_update(reservation)},
                ]
            )
        except AWS_FAILURES as exc:
            reasons = (getattr(exc, "response", None) or {}).get("CancellationReasons") or []
            codes = [r.get("Code", "None") if isinstance(r, dict) else "None" for r in reasons]
            if codes[:2] == ["None", "ConditionalCheckFailed"]:
                self._audit.record(record)
                return
            raise AuditUnavailable("the audit record could not be stored") from exc


class SeparateSigningCommit:
    """The same contract on two adapters (the fakes): the record, then the lease."""

    def __init__(self, audit: AuditLog, quotas: QuotaStore) -> None:
        self._audit = audit
        self._quotas = quotas

    def signed(self, record: AuditRecord, reservation: Reservation) -> None:
        self._audit.record(record)
        self._quotas.release(reservation, refund=False)


__all__ = [
    "DynamoDbAuditLog",
    "DynamoDbSigningCommit",
    "InMemoryAuditLog",
    "SeparateSigningCommit",
    "to_attribute",
]
