"""Plan quotas (spec §5.2) through the real handlers: every refusal with its §3.6 code and
headers, the §3.2 ``policy`` block and ``RateLimit-*`` on success, units given back by a
request refused after its reservation, and leases that free themselves.

The container's clock is frozen (``FixedClock``) so that one test's requests share one QPS
window and the daily reset is known to the second."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from local.release import HttpPusher, publish_scanner_image
from stellaops_signer import wiring
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.domain.errors import ArtifactTooLarge, QuotaExhausted, ReleaseUntrusted
from stellaops_signer.domain.quota import LEASE_SECONDS, Plan
from tests.conftest import load_event, poe_for
from tests.functions.conftest import response_headers, sign_event, token_for

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
#: The event's headers without its Idempotency-Key: every call here is a new request.
HEADERS = {
    k: v for k, v in load_event("sign_dsse/sign-dsse.json")["headers"].items() if k != "Idempotency-Key"
}
LICENCE = "LIC-A-001"
ROOMY = {"qps": 100, "concurrency": 5, "maxArtifactBytes": 1048576, "dailySignatures": 100}


# --- helpers ---------------------------------------------------------------------------------


def _plan(monkeypatch: pytest.MonkeyPatch, **limits: int) -> Plan:
    """GIVEN the installation also offers the plan ``tiny`` with ``limits`` (else ROOMY's)."""
    tiny = {**ROOMY, **limits}
    plans = json.loads(os.environ["SIGNER_PLANS"])  # the local stack's dev and pro
    monkeypatch.setenv("SIGNER_PLANS", json.dumps({**plans, "tiny": tiny}))
    wiring.reset()
    return Plan(**tiny)


def _freeze(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """Replace the container's clock before its adapters are built (they keep the one they got)."""
    clock = FixedClock(float(int(time.time())))
    monkeypatch.setattr(wiring.container(), "clock", clock)
    return clock


def _body(poe: str, **changes: Any) -> dict[str, Any]:
    return {**BODY, "poe": {"format": "jwt", "value": poe}, **changes}


def _sign(handlers: Any, body: Any = None, raw: str | None = None) -> tuple[int, dict[str, str], Any]:
    answer = handlers["sign_dsse"](sign_event(body, headers=HEADERS, raw_body=raw))
    return answer["statusCode"], response_headers(answer), json.loads(answer["body"])


def _signed(handlers: Any, body: Any = None, raw: str | None = None) -> tuple[dict[str, str], Any]:
    status, headers, answer = _sign(handlers, body, raw)
    assert status == 200, answer
    return headers, answer


def _refused(
    aws: Any, handlers: Any, body: Any, status: int, code: str, raw: str | None = None
) -> dict[str, str]:
    got_status, headers, answer = _sign(handlers, body, raw)
    assert (got_status, answer.get("code")) == (status, code), answer
    assert headers["content-type"] == "application/problem+json" and "bundle" not in answer
    assert code in [r.get("error_code") for r in aws.audit_records() if r["decision"] == "deny"]
    return headers


def _pro() -> Plan:
    return wiring.container().settings.plans["pro"]


def _usage(plan: Plan) -> dict[str, int]:
    return wiring.container().quotas.usage(LICENCE, plan)


def _quota(handlers: Any, poe: str) -> dict[str, Any]:
    event = load_event("check_quota/quota.json")
    event["headers"]["X-StellaOps-PoE"] = poe
    event["multiValueHeaders"]["X-StellaOps-PoE"] = [poe]
    answer = handlers["check_quota"](event)
    assert answer["statusCode"] == 200, answer["body"]
    return json.loads(answer["body"])


def _padded(poe: str, size: int) -> str:
    """A valid body of exactly ``size`` bytes."""
    skeleton = json.dumps(_body(poe, predicate={"pad": ""}))
    raw = json.dumps(_body(poe, predicate={"pad": "x" * (size - len(skeleton))}))
    assert len(raw.encode()) == size
    return raw


def _reserve(handlers: Any, authority: Any, cert: Any, poe: str, artifact_bytes: int = 2048) -> Any:
    """The pipeline's CheckQuota step (direct invocation)."""
    event = {
        "action": "reserve",
        "opToken": token_for(authority, cert),
        "poe": {"format": "jwt", "value": poe},
        "artifactBytes": artifact_bytes,
    }
    return handlers["check_quota"](event)


@pytest.fixture
def unsigned_digest(release: Any) -> str:
    return publish_scanner_image(HttpPusher(release.registry.base_url), "stellaops/scanner")


# --- success ---------------------------------------------------------------------------------


def test_success_carries_rate_limit_headers_and_the_policy_block(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    for used in (1, 2):
        headers, answer = _signed(handlers, _body(poe))
        assert answer["policy"] == {
            "plan": "pro",
            "licenseId": LICENCE,
            "maxArtifactBytes": 10485760,
            "qpsLimit": 10,
            "qpsRemaining": 10 - used,
            "dailyRemaining": 10000 - used,
        }
        assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("10", str(10 - used))
        assert headers["ratelimit-reset"] == "1"


def test_the_quota_answer_carries_rate_limit_headers_of_its_usage(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    for _ in range(3):
        _signed(handlers, _body(poe))
    event = load_event("check_quota/quota.json")
    event["headers"]["X-StellaOps-PoE"] = poe
    event["multiValueHeaders"]["X-StellaOps-PoE"] = [poe]
    answer = handlers["check_quota"](event)
    headers = response_headers(answer)
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"], headers["ratelimit-reset"]) == (
        "10",
        "7",
        "1",
    )
    assert headers["ratelimit-policy"] == '10;w=1;comment="per second", 10000;w=86400;comment="per day"'


def test_quota_usage_reflects_signings(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    _signed(handlers, _body(poe))
    _signed(handlers, _body(poe))
    status = _quota(handlers, poe)
    assert status["usage"] == {"qps": 2, "inFlight": 0, "daily": 2}
    assert status["remaining"] == {"qps": 8, "concurrency": 5, "daily": 9998}
    clock.advance(1)
    assert _quota(handlers, poe)["usage"] == {"qps": 0, "inFlight": 0, "daily": 2}


# --- refusals --------------------------------------------------------------------------------


def test_requests_over_the_plans_qps_are_throttled_with_retry_after(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, qps=1)
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    headers, _ = _signed(handlers, _body(poe))
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("1", "0")
    headers = _refused(aws, handlers, _body(poe), 429, "plan_throttled")
    assert headers["retry-after"] == "1"
    assert headers["ratelimit-limit"] == "1" and headers["ratelimit-reset"] == "1"
    assert "ratelimit-remaining" in headers
    clock.advance(1)  # the next one-second window
    _signed(handlers, _body(poe))


def test_qps_refusal_reports_no_remaining_requests(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, qps=1)
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    _signed(handlers, _body(poe))
    headers = _refused(aws, handlers, _body(poe), 429, "plan_throttled")
    assert headers["ratelimit-remaining"] == "0"


def test_signing_while_every_lease_is_held_is_throttled(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(monkeypatch, concurrency=2)
    clock = _freeze(monkeypatch)
    held = [wiring.container().quotas.reserve(LICENCE, plan) for _ in range(2)]
    headers = _refused(
        aws, handlers, _body(poe_for(licensing, now=clock.now(), plan="tiny")), 429, "plan_throttled"
    )
    assert headers["retry-after"] == "1"
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(headers)
    assert _usage(plan) == {"qps": 2, "daily": 2, "inFlight": 2}  # the refused request gave its units back
    wiring.container().quotas.release(held[0], refund=False)
    _signed(handlers, _body(poe_for(licensing, now=clock.now(), plan="tiny")))


def test_signing_over_the_daily_cap_is_exhausted_until_utc_midnight(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(monkeypatch, dailySignatures=2)
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    _signed(handlers, _body(poe))
    _signed(handlers, _body(poe))
    headers = _refused(aws, handlers, _body(poe), 429, "quota_exhausted")
    to_midnight = str(86400 - int(clock.now()) % 86400)
    assert headers["retry-after"] == to_midnight and headers["ratelimit-reset"] == to_midnight
    assert headers["ratelimit-limit"] == "2" and headers["ratelimit-remaining"] == "0"  # the daily policy
    assert _usage(plan) == {"qps": 2, "daily": 2, "inFlight": 0}


def test_daily_refusal_reports_no_remaining_requests(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, dailySignatures=1)
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    _signed(handlers, _body(poe))
    headers = _refused(aws, handlers, _body(poe), 429, "quota_exhausted")
    assert headers["ratelimit-remaining"] == "0"


def test_request_larger_than_max_artifact_bytes_is_refused_with_413(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(monkeypatch, maxArtifactBytes=4096)
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    _refused(aws, handlers, None, 413, "artifact_too_large", raw=_padded(poe, 4097))
    assert _usage(plan) == {"qps": 0, "daily": 0, "inFlight": 0}  # refused before reserving


def test_request_of_exactly_max_artifact_bytes_is_accepted(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, maxArtifactBytes=4096)
    clock = _freeze(monkeypatch)
    _, answer = _signed(handlers, raw=_padded(poe_for(licensing, now=clock.now(), plan="tiny"), 4096))
    assert answer["policy"]["maxArtifactBytes"] == 4096


# --- a request refused after its reservation gives it back -----------------------------------


def test_request_refused_for_an_untrusted_release_gives_back_its_units(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch, unsigned_digest: str
) -> None:
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    _refused(aws, handlers, _body(poe, scannerImageDigest=unsigned_digest), 403, "release_untrusted")
    assert _usage(_pro()) == {"qps": 0, "daily": 0, "inFlight": 0}
    quota = _quota(handlers, poe)
    assert quota["usage"]["daily"] == 0 and quota["remaining"]["concurrency"] == 5


def test_request_refused_for_a_release_outside_the_licence_window_gives_back_its_units(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    _refused(
        aws,
        handlers,
        _body(poe_for(licensing, now=clock.now(), valid_release_year=2026)),
        403,
        "entitlement_denied",
    )
    assert _usage(_pro()) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_request_refused_by_kms_gives_back_its_units(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    aws.client("kms").disable_key(KeyId=aws.physical["SigningKey"]["KeyId"])
    _refused(aws, handlers, _body(poe_for(licensing, now=clock.now())), 503, "signing_unavailable")
    assert _usage(_pro()) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_signature_that_cannot_be_audited_is_not_charged(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    aws.client("dynamodb").delete_table(TableName=aws.environment["SIGNER_AUDIT_TABLE"])
    answer = handlers["sign_dsse"](sign_event(_body(poe_for(licensing, now=clock.now())), headers=HEADERS))
    assert (answer["statusCode"], json.loads(answer["body"])["code"]) == (503, "audit_unavailable")
    assert _usage(_pro()) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_refused_request_leaves_the_daily_count_of_the_next_success_unchanged(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch, unsigned_digest: str
) -> None:
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    _refused(aws, handlers, _body(poe, scannerImageDigest=unsigned_digest), 403, "release_untrusted")
    _, answer = _signed(handlers, _body(poe))
    assert (answer["policy"]["qpsRemaining"], answer["policy"]["dailyRemaining"]) == (9, 9999)


# --- leases free themselves ------------------------------------------------------------------


def test_abandoned_lease_is_reclaimed_after_lease_seconds(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN an invocation that took the only lease and crashed (it never releases)."""
    _plan(monkeypatch, concurrency=1)
    clock = _freeze(monkeypatch)
    wiring.container().quotas.reserve(LICENCE, Plan(**{**ROOMY, "concurrency": 1}))
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    _refused(aws, handlers, _body(poe), 429, "plan_throttled")
    clock.advance(LEASE_SECONDS - 1)
    _refused(aws, handlers, _body(poe), 429, "plan_throttled")
    clock.advance(2)
    _signed(handlers, _body(poe))


def test_abandoned_lease_never_holds_its_slot_longer_than_lease_seconds(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, concurrency=1)
    clock = _freeze(monkeypatch)
    wiring.container().quotas.reserve(LICENCE, Plan(**{**ROOMY, "concurrency": 1}))
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    clock.advance(LEASE_SECONDS + 0.5)
    assert _quota(handlers, poe)["remaining"]["concurrency"] == 1
    _signed(handlers, _body(poe))


# --- the pipeline's own reservations (check_quota direct, then sign_dsse with it) ------------


def test_pipeline_reservation_over_the_daily_cap_raises_quota_exhausted(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(monkeypatch, dailySignatures=1)
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now(), plan="tiny")
    first = _reserve(handlers, authority, client_cert, poe)
    with pytest.raises(QuotaExhausted) as refused:
        _reserve(handlers, authority, client_cert, poe)
    assert refused.value.headers["Retry-After"] == str(86400 - int(clock.now()) % 86400)
    token = token_for(authority, client_cert)
    release = {"action": "release", "opToken": token, "reservation": first["reservation"]}
    assert handlers["check_quota"](release) == {"released": True}
    assert _usage(plan) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_pipeline_reservation_larger_than_max_artifact_bytes_raises_artifact_too_large(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(monkeypatch, maxArtifactBytes=4096)
    clock = _freeze(monkeypatch)
    with pytest.raises(ArtifactTooLarge):
        _reserve(handlers, authority, client_cert, poe_for(licensing, now=clock.now(), plan="tiny"), 4097)
    assert _usage(plan) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_pipeline_signing_with_its_reservation_is_charged_once_and_frees_the_lease(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    reserved = _reserve(handlers, authority, client_cert, poe)["reservation"]
    event = {"opToken": token_for(authority, client_cert), "request": _body(poe), "reservation": reserved}
    answer = handlers["sign_dsse"](event)
    assert (answer["policy"]["qpsRemaining"], answer["policy"]["dailyRemaining"]) == (9, 9999)
    assert _usage(_pro()) == {"qps": 1, "daily": 1, "inFlight": 0}


def test_pipeline_failure_is_given_back_once_by_its_release_step(
    aws: Any,
    handlers: Any,
    licensing: Any,
    authority: Any,
    client_cert: Any,
    monkeypatch: pytest.MonkeyPatch,
    unsigned_digest: str,
) -> None:
    """GIVEN another execution holding a reservation; WHEN one fails to sign and its
    ReleaseQuota step runs THEN only the failed execution's units come back."""
    clock = _freeze(monkeypatch)
    poe = poe_for(licensing, now=clock.now())
    _reserve(handlers, authority, client_cert, poe)  # the other execution, still running
    reserved = _reserve(handlers, authority, client_cert, poe)["reservation"]
    request = _body(poe, scannerImageDigest=unsigned_digest)
    with pytest.raises(ReleaseUntrusted):
        handlers["sign_dsse"](
            {"opToken": token_for(authority, client_cert), "request": request, "reservation": reserved}
        )
    release = {"action": "release", "opToken": token_for(authority, client_cert), "reservation": reserved}
    assert handlers["check_quota"](release) == {"released": True}
    assert _usage(_pro()) == {"qps": 1, "daily": 1, "inFlight": 1}
    assert handlers["check_quota"](release) == {"released": False}  # a retried compensation: nothing
    assert _usage(_pro()) == {"qps": 1, "daily": 1, "inFlight": 1}


def test_an_unexpected_failure_after_reserving_still_gives_the_units_back(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stellaops_signer.usecases import sign_dsse

    plan = _plan(monkeypatch, dailySignatures=5)
    poe = poe_for(licensing, plan="tiny")

    def a_bug(*_: Any) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sign_dsse, "pae", a_bug)
    answer = handlers["sign_dsse"](sign_event(_body(poe)))
    assert answer["statusCode"] == 500
    assert _usage(plan) == {"qps": 0, "daily": 0, "inFlight": 0}
    assert [r["error_code"] for r in aws.audit_records()] == ["internal_error"]
