"""Entitlement and quotas end to end: the local Licensing issues PoEs, the dev plan runs out."""

from __future__ import annotations

from typing import Any

import pytest

from local.client import SignerClient
from tests.e2e.test_local_stack import BODY, SIGN, _problem

pytestmark = pytest.mark.e2e
QUOTA = "/api/v1/signer/quota"


def test_the_client_signs_with_its_own_poe_and_gets_the_policy(stack: dict[str, Any]) -> None:
    client = SignerClient(stack)
    answer = client.call("POST", SIGN, client.token(), json={**BODY, "poe": client.poe()})
    assert answer.status_code == 200, answer.text
    policy = answer.json()["policy"]
    assert policy["plan"] == "pro" and policy["licenseId"] == "LIC-A-001"
    assert int(answer.headers["RateLimit-Limit"]) == policy["qpsLimit"]
    assert int(answer.headers["RateLimit-Remaining"]) == policy["qpsRemaining"]


def test_the_quota_route_answers_the_callers_plan_and_usage(stack: dict[str, Any]) -> None:
    client = SignerClient(stack)
    poe = client.poe()
    answer = client.call("GET", QUOTA, client.token(), headers={"X-StellaOps-PoE": poe["value"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (
        body["plan"] == "pro" and body["limits"]["dailySignatures"] == 10000 and "dailyAt" in body["resets"]
    )


def test_a_poe_bound_to_another_dpop_key_is_refused(stack: dict[str, Any]) -> None:
    other = SignerClient(stack)
    client = SignerClient(stack)
    answer = client.call("POST", SIGN, client.token(), json={**BODY, "poe": other.poe()})
    _problem(answer, 403, "entitlement_denied")


def test_the_small_dev_plan_is_throttled_with_retry_after(stack: dict[str, Any]) -> None:
    client = SignerClient(stack, "scanner-b")  # tenant-b holds the "dev" plan: 2 per second, 1 in flight
    token, poe = client.token(), client.poe()
    body = {**BODY, "poe": poe}
    answers = [
        client.call("POST", SIGN, token, json=body) for _ in range(6)
    ]  # > 2 per second, whatever the clock
    statuses = [a.status_code for a in answers]
    assert 200 in statuses and 429 in statuses, statuses
    throttled = next(a for a in answers if a.status_code == 429)
    problem = _problem(throttled, 429, throttled.json()["code"])
    assert problem["code"] in ("plan_throttled", "quota_exhausted")
    assert int(throttled.headers["Retry-After"]) >= 1 and "RateLimit-Limit" in throttled.headers
