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
