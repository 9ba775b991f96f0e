"""Idempotency-Key on POST /sign/dsse (spec §5.4): one signature and one charge per key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import load_event, poe_for
from tests.functions.conftest import response_headers, sign_event

EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(EVENT["body"])
HEADERS = EVENT["headers"]


def _sign(
    handlers: Any, body: Any, key: str | None, **headers: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    sent = {k: v for k, v in HEADERS.items() if k != "Idempotency-Key"} | headers
    if key is not None:
        sent["Idempotency-Key"] = key
    answer = handlers["sign_dsse"](sign_event(body, headers=sent))
    return answer["statusCode"], response_headers(answer), json.loads(answer["body"])


def _daily_used(licence: str = "LIC-A-001") -> int:
    from stellaops_signer import wiring

    container = wiring.container()
    return container.quotas.usage(licence, container.settings.plans["pro"])["daily"]


def test_a_retry_with_the_same_key_and_body_returns_the_first_answer_uncharged(
    aws: Any, handlers: Any
) -> None:
    status, headers, first = _sign(handlers, BODY, "retry-1")
    assert status == 200, first
    again_status, again_headers, again = _sign(handlers, BODY, "retry-1")
    assert again_status == 200 and again == first  # same bundle, same auditId
    assert again_headers["ratelimit-limit"] == headers["ratelimit-limit"]
    assert _daily_used() == 1
    assert len([r for r in aws.audit_records() if r["decision"] == "allow"]) == 1


def test_the_same_key_with_another_body_is_a_conflict(aws: Any, handlers: Any) -> None:
    assert _sign(handlers, BODY, "retry-2")[0] == 200
    other = {**BODY, "predicate": {"different": True}}
    status, _, body = _sign(handlers, other, "retry-2")
    assert (status, body["code"]) == (409, "idempotency_conflict")
    assert _daily_used() == 1


def test_a_retry_while_the_first_is_still_running_is_a_conflict(
    aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stellaops_signer import wiring

    verifier = wiring.container().release_verifier
    real_verify = verifier.verify
    seen: dict[str, Any] = {}

    def retry_meanwhile(digest: str, repository: str | None = None) -> Any:
        if "retry" not in seen:
            seen["retry"] = _sign(handlers, BODY, "retry-3")  # the client retries before the answer
        return real_verify(digest, repository)

    monkeypatch.setattr(verifier, "verify", retry_meanwhile)
    assert _sign(handlers, BODY, "retry-3")[0] == 200
    status, _, body = seen["retry"]
    assert (status, body["code"]) == (409, "idempotency_conflict")


def test_a_failed_first_request_can_be_retried_with_its_key(aws: Any, handlers: Any) -> None:
    broken = {**BODY, "predicateType": "https://example.com/unknown@v1"}
    assert _sign(handlers, broken, "retry-4")[0] == 400
    assert _sign(handlers, BODY, "retry-4")[0] == 200


def test_keys_are_scoped_to_the_tenant(aws: Any, handlers: Any, licensing: Any) -> None:
    assert _sign(handlers, BODY, "shared-key")[0] == 200
    context = {**EVENT["requestContext"]["authorizer"], "tid": "tenant-b", "inst": "inst-9"}
    body_b = {**BODY, "poe": {"format": "jwt", "value": poe_for(licensing, "tenant-b", "inst-9")}}
    sent = {k: v for k, v in HEADERS.items() if k not in ("Idempotency-Key", "X-StellaOps-Tenant")}
    answer = handlers["sign_dsse"](
        sign_event(body_b, context=context, headers=sent | {"Idempotency-Key": "shared-key"})
    )
    assert answer["statusCode"] == 200, answer["body"]  # not tenant-a's stored answer, nor a conflict
    assert json.loads(answer["body"])["policy"]["licenseId"] == "LIC-B-001"


def test_requests_without_a_key_are_signed_each_time(aws: Any, handlers: Any) -> None:
    first, second = _sign(handlers, BODY, None)[2], _sign(handlers, BODY, None)[2]
    assert first["auditId"] != second["auditId"] and _daily_used() == 2


def test_a_retry_that_reserialises_the_same_body_is_the_same_request(aws: Any, handlers: Any) -> None:
    reordered = {k: BODY[k] for k in reversed(list(BODY))}
    first = _sign(handlers, BODY, "retry-5")[2]
    status, _, again = _sign(handlers, reordered, "retry-5")
    assert status == 200 and again["auditId"] == first["auditId"]


# --- a replay is a request like any other until the gates pass (spec §5.4) --------------------


def test_a_replay_passes_the_gates_and_leaves_its_own_audit_record(aws: Any, handlers: Any) -> None:
    status, _, first = _sign(handlers, BODY, "replay-audit")
    assert status == 200
    again_status, again_headers, again = _sign(handlers, BODY, "replay-audit")
    assert again_status == 200 and again == first and again_headers["idempotent-replayed"] == "true"
    replays = [r for r in aws.audit_records() if r["decision"] == "replay"]
    assert len(replays) == 1 and replays[0]["replay_of"] == first["auditId"]
    assert replays[0]["pk"] != first["auditId"] and replays[0]["tenant"] == "tenant-a"


def _context(**changes: str) -> dict[str, Any]:
    return {**EVENT["requestContext"]["authorizer"], **changes}


def _replay(handlers: Any, key: str, context: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    sent = {k: v for k, v in HEADERS.items() if k != "Idempotency-Key"} | {"Idempotency-Key": key} | headers
    answer = handlers["sign_dsse"](sign_event(BODY, context=context, headers=sent))
    return answer["statusCode"], json.loads(answer["body"])


def test_a_replay_without_the_sign_scope_is_refused(aws: Any, handlers: Any) -> None:
    assert _sign(handlers, BODY, "replay-scope")[0] == 200
    status, body = _replay(handlers, "replay-scope", _context(scope="signer.verify"))
    assert (status, body["code"]) == (403, "insufficient_scope") and "bundle" not in body


def test_a_replay_with_another_tenant_header_is_refused(aws: Any, handlers: Any) -> None:
    assert _sign(handlers, BODY, "replay-tenant")[0] == 200
    status, body = _replay(handlers, "replay-tenant", _context(), **{"X-StellaOps-Tenant": "tenant-b"})
    assert (status, body["code"]) == (403, "tenant_mismatch") and "bundle" not in body


def test_a_replay_by_an_unauthenticated_caller_is_refused(aws: Any, raw_handlers: Any, handlers: Any) -> None:
    assert _sign(handlers, BODY, "replay-token")[0] == 200
    sent = dict(HEADERS) | {"Idempotency-Key": "replay-token"}
    answer = raw_handlers["sign_dsse"](sign_event(BODY, headers=sent))  # the event's stale token
    assert (answer["statusCode"], json.loads(answer["body"])["code"]) == (401, "invalid_token")


def test_a_replay_of_a_poe_revoked_since_is_refused(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import poe_identity
    from tests.http_double import ScriptedServer

    body = {**BODY, "poe": {"format": "jwt", "value": poe_for(licensing)}}
    server = ScriptedServer().start()
    try:
        server.answer("/license/introspect", body='{"active": true}')
        monkeypatch.setenv("SIGNER_LICENSING_INTROSPECT_URL", server.base_url + "/license/introspect")
        monkeypatch.setenv("SIGNER_POE_CACHE_TTL_SECONDS", "0")  # ask Licensing every time
        from stellaops_signer import wiring

        wiring.reset()
        assert _sign(handlers, body, "replay-revoked")[0] == 200
        server.answer("/license/introspect", body='{"active": false, "revoked": true}')
        status, _, answer = _sign(handlers, body, "replay-revoked")
        assert (status, answer["code"]) == (403, "entitlement_denied") and "bundle" not in answer
        assert len(server.requests) == 2 and poe_identity(body["poe"]["value"]) in str(aws.audit_records())
    finally:
        server.stop()


def test_keys_of_tenants_whose_ids_hold_separators_never_collide(
    aws: Any, handlers: Any, licensing: Any
) -> None:
    """``a#b`` + ``c`` and ``a`` + ``b#c`` were one record under a ``tenant#key`` scheme."""
    answers = []
    for tenant, key in (("a#b", "c"), ("a", "b#c")):
        poe = poe_for(licensing, tid=tenant)
        body = {**BODY, "poe": {"format": "jwt", "value": poe}}
        sent = {k: v for k, v in HEADERS.items() if k not in ("Idempotency-Key", "X-StellaOps-Tenant")}
        answer = handlers["sign_dsse"](
            sign_event(body, context=_context(tid=tenant), headers=sent | {"Idempotency-Key": key})
        )
        assert answer["statusCode"] == 200, answer["body"]
        answers.append(json.loads(answer["body"]))
    assert answers[0]["auditId"] != answers[1]["auditId"]
    assert not [r for r in aws.audit_records() if r["decision"] == "replay"]


# --- answers larger than a DynamoDB item (spec §5.4) ------------------------------------------

#: A 160 KB predicate with a Sigstore bundle: the answer carries it base64-encoded twice (~430 KB).
LARGE = {**BODY, "predicate": {"blob": "x" * 160_000}, "options": {"returnBundle": "sigstore"}}


def _idempotency_items(aws: Any) -> list[dict[str, Any]]:
    table = aws.environment["SIGNER_IDEMPOTENCY_TABLE"]
    items: list[dict[str, Any]] = aws.client("dynamodb").scan(TableName=table)["Items"]
    return items


def test_a_large_answer_is_stored_by_reference_and_replayed_intact(aws: Any, handlers: Any) -> None:
    status, _, first = _sign(handlers, LARGE, "large-1")
    assert status == 200, first
    assert len(json.dumps(first)) > 400_000
    [item] = _idempotency_items(aws)
    assert len(json.dumps(item)) < 10_000 and "s3://" in item["data"]["S"]  # the record holds a reference
    again_status, _, again = _sign(handlers, LARGE, "large-1")
    assert again_status == 200 and again == first
    assert _daily_used() == 1 and len([r for r in aws.audit_records() if r["decision"] == "allow"]) == 1


def test_a_stored_answer_altered_in_the_bucket_is_not_replayed(aws: Any, handlers: Any) -> None:
    assert _sign(handlers, LARGE, "large-2")[0] == 200
    [item] = _idempotency_items(aws)
    reference = json.loads(item["data"]["S"])
    uri = (reference.get("storedAnswer") or {}).get("s3Uri")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = aws.client("s3")
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    altered = stored.replace(b'"mode":"kms"', b'"mode":"kmz"', 1)  # same size, other bytes
    assert altered != stored
    s3.put_object(Bucket=bucket, Key=key, Body=altered)
    status, _, answer = _sign(handlers, LARGE, "large-2")
    assert (status, answer["code"]) == (503, "signing_unavailable") and "bundle" not in answer
    assert _daily_used() == 1


def test_an_unwritable_bucket_is_known_before_signing(
    aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN the payload bucket is gone WHEN a keyed request would need it THEN 503 before KMS signs."""
    s3 = aws.client("s3")
    bucket = aws.environment["SIGNER_PAYLOAD_BUCKET"]
    for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=listed["Key"])
    s3.delete_bucket(Bucket=bucket)
    from stellaops_signer import wiring

    signer = wiring.container().key_signer
    calls: list[bytes] = []
    real_sign = signer.sign
    monkeypatch.setattr(signer, "sign", lambda message: calls.append(message) or real_sign(message))
    status, _, answer = _sign(handlers, LARGE, "large-3")
    assert (status, answer["code"]) == (503, "signing_unavailable")
    assert calls == [] and _daily_used() == 0
    assert not [r for r in aws.audit_records() if r["decision"] == "allow"]
