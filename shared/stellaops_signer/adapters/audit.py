"""Audit records in DynamoDB, written once (a conditional put) before any bundle is returned."""

from __future__ import annotations

from typing import Any

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.domain.audit import AuditRecord
from stellaops_signer.domain.errors import AuditUnavailable


def to_attribute(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"L": [to_attribute(v) for v in value]}
    return {"S": str(value)}


class DynamoDbAuditLog:
    def __init__(self, client: Any, table: str, *, retention_seconds: int, clock: Any) -> None:
        self._client = client
        self._table = table
        self._retention = retention_seconds
        self._clock = clock

    def record(self, record: AuditRecord) -> None:
        item = {k: to_attribute(v) for k, v in record.as_item().items()}
        item["pk"] = {"S": record.audit_id}
        item["expiresAt"] = {"N": str(int(self._clock.now()) + self._retention)}
        try:
            self._client.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except AWS_FAILURES as exc:
            raise AuditUnavailable("the audit record could not be stored") from exc


class InMemoryAuditLog:
    """A fake with the same contract: records in order, refuses duplicate ids."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.fail = False

    def record(self, record: AuditRecord) -> None:
        if self.fail or any(r.audit_id == record.audit_id for r in self.records):
            raise AuditUnavailable("the audit record could not be stored")
        self.records.append(record)
