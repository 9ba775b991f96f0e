"""The AuditLog contract, run against the DynamoDB adapter (moto) and the in-memory fake alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stellaops_signer.adapters.audit import DynamoDbAuditLog, InMemoryAuditLog
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.domain.audit import AuditRecord
from stellaops_signer.domain.errors import AuditUnavailable

NOW = 1_800_000_000


def _record(audit_id: str = "a-1", **fields: Any) -> AuditRecord:
    return AuditRecord(
        audit_id=audit_id,
        time="2027-01-15T08:00:00.000Z",
        route="/api/v1/signer/sign/dsse",
        decision="allow",
        correlation_id="c-1",
        latency_ms=12,
        tenant="tenant-a",
        subject_digests=("sha256:" + "a" * 64,),
        bundle_sha256="b" * 64,
        **fields,
    )


@pytest.fixture(params=["dynamodb", "memory"])
def audit_log(request: pytest.FixtureRequest) -> tuple[Any, Callable[[], list[dict[str, Any]]]]:
    if request.param == "memory":
        fake = InMemoryAuditLog()
        return fake, lambda: [r.as_item() for r in fake.records]
    aws = request.getfixturevalue("aws")
    log = DynamoDbAuditLog(
        aws.client("dynamodb"),
        aws.environment["SIGNER_AUDIT_TABLE"],
        retention_seconds=400 * 86400,
        clock=FixedClock(NOW),
    )
    return log, aws.audit_records


def test_a_record_is_stored_with_its_fields(audit_log: Any) -> None:
    log, stored = audit_log
    log.record(_record())
    [item] = stored()
    assert item["decision"] == "allow" and item["tenant"] == "tenant-a" and item["bundle_sha256"] == "b" * 64
    assert item["subject_digests"] in (["sha256:" + "a" * 64], [{"S": "sha256:" + "a" * 64}])


def test_a_record_id_is_written_once(audit_log: Any) -> None:
    log, stored = audit_log
    log.record(_record())
    with pytest.raises(AuditUnavailable):
        log.record(_record())
    assert len(stored()) == 1


def test_an_unreachable_store_is_audit_unavailable(aws: Any) -> None:
    log = DynamoDbAuditLog(
        aws.client("dynamodb"), "no-such-table", retention_seconds=1, clock=FixedClock(NOW)
    )
    with pytest.raises(AuditUnavailable):
        log.record(_record())


def test_dynamodb_records_expire_after_the_retention(aws: Any) -> None:
    log = DynamoDbAuditLog(
        aws.client("dynamodb"),
        aws.environment["SIGNER_AUDIT_TABLE"],
        retention_seconds=400 * 86400,
        clock=FixedClock(NOW),
    )
    log.record(_record())
    [item] = aws.audit_records()
    assert int(item["expiresAt"]) == NOW + 400 * 86400
