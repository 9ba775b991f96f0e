"""Plan quotas (spec §5.2) through the real handlers: every refusal with its §3.6 code and
headers, the §3.2 ``policy`` block and ``RateLimit-*`` on success, units given back by a
request refused after its reservation, and leases that free themselves.

The container's clock is frozen (``FixedClock``) so that one test's requests share one QPS
window and the daily reset is known to the second."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
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
NOTHING_CHARGED = {"qps": 0, "daily": 0, "inFlight": 0}
UNTIL_MIDNIGHT = "seconds to the next UTC midnight"  # a Retry-After, counted from the frozen clock


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    plan: Plan
    clock: FixedClock
    poe: str


def _given(
    monkeypatch: pytest.MonkeyPatch, licensing: Any, limits: dict[str, int] | None = None, **claims: Any
) -> Given:
    """GIVEN the plan ``tiny`` with ``limits`` (else the licence's ``pro``), a frozen clock and a
    PoE for that plan (``claims`` override)."""
    plan = _plan(monkeypatch, **limits) if limits else None  # first: it resets the wiring (and clock)
    clock = _freeze(monkeypatch)
    if plan is None:
        return Given(_pro(), clock, poe_for(licensing, now=clock.now(), **claims))
    return Given(plan, clock, poe_for(licensing, now=clock.now(), plan="tiny", **claims))


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


def _use_up(handlers: Any, given: Given, limits: dict[str, int]) -> list[Any]:
    """Use up the one limit in ``limits``: hold that many leases (concurrency) or sign that many
    times (qps, dailySignatures). Returns the leases held."""
    [(name, limit)] = limits.items()
    if name == "concurrency":
        return [wiring.container().quotas.reserve(LICENCE, given.plan) for _ in range(limit)]
    for _ in range(limit):
        _signed(handlers, _body(given.poe))
    return []


def _pro() -> Plan:
    return wiring.container().settings.plans["pro"]


def _usage(plan: Plan) -> dict[str, int]:
    return wiring.container().quotas.usage(LICENCE, plan)


def _quota_answer(handlers: Any, poe: str) -> dict[str, Any]:
    """``GET /quota`` with ``poe``: the proxy answer."""
    event = load_event("check_quota/quota.json")
    event["headers"]["X-StellaOps-PoE"] = poe
    event["multiValueHeaders"]["X-StellaOps-PoE"] = [poe]
    answer: dict[str, Any] = handlers["check_quota"](event)
    return answer


def _quota(handlers: Any, poe: str) -> dict[str, Any]:
    answer = _quota_answer(handlers, poe)
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


def _release(authority: Any, cert: Any, reservation: Any) -> dict[str, Any]:
    """The pipeline's ReleaseQuota step: its event (a retry sends the same one again)."""
    return {"action": "release", "opToken": token_for(authority, cert), "reservation": reservation}


@pytest.fixture
def unsigned_digest(release: Any) -> str:
    return publish_scanner_image(HttpPusher(release.registry.base_url), "stellaops/scanner")


# --- success ---------------------------------------------------------------------------------


def test_success_carries_rate_limit_headers_and_the_policy_block(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing)
    for used in (1, 2):
        headers, answer = _signed(handlers, _body(given.poe))
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
    given = _given(monkeypatch, licensing)
    for _ in range(3):
        _signed(handlers, _body(given.poe))
    headers = response_headers(_quota_answer(handlers, given.poe))
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"], headers["ratelimit-reset"]) == (
        "10",
        "7",
        "1",
    )
    assert headers["ratelimit-policy"] == '10;w=1;comment="per second", 10000;w=86400;comment="per day"'


def test_quota_usage_reflects_signings(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing)
    _signed(handlers, _body(given.poe))
    _signed(handlers, _body(given.poe))
    status = _quota(handlers, given.poe)
    assert status["usage"] == {"qps": 2, "inFlight": 0, "daily": 2}
    assert status["remaining"] == {"qps": 8, "concurrency": 5, "daily": 9998}
    given.clock.advance(1)
    assert _quota(handlers, given.poe)["usage"] == {"qps": 0, "inFlight": 0, "daily": 2}


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "code", "retry_after", "usage"),
    [
        # the limit used up, the 429's code, its Retry-After, usage left as (qps, daily, inFlight)
        pytest.param({"qps": 1}, "plan_throttled", "1", (1, 1, 0), id="qps"),
        pytest.param({"concurrency": 2}, "plan_throttled", "1", (2, 2, 2), id="concurrency"),
        pytest.param({"dailySignatures": 1}, "quota_exhausted", UNTIL_MIDNIGHT, (1, 1, 0), id="daily of 1"),
        pytest.param({"dailySignatures": 2}, "quota_exhausted", UNTIL_MIDNIGHT, (2, 2, 0), id="daily of 2"),
    ],
)
def test_a_used_up_limit_is_refused_with_429_and_rate_limit_headers(
    aws: Any,
    handlers: Any,
    licensing: Any,
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, int],
    code: str,
    retry_after: str,
    usage: tuple[int, int, int],
) -> None:
    """THEN Retry-After is also RateLimit-Reset, RateLimit-Limit is the limit that ran out with
    nothing Remaining, and the refused request gave its units back."""
    given = _given(monkeypatch, licensing, limits)
    _use_up(handlers, given, limits)
    headers = _refused(aws, handlers, _body(given.poe), 429, code)
    if retry_after == UNTIL_MIDNIGHT:
        retry_after = str(86400 - int(given.clock.now()) % 86400)
    [limit] = limits.values()
    assert (headers["retry-after"], headers["ratelimit-reset"]) == (retry_after, retry_after)
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == (str(limit), "0")
    assert _usage(given.plan) == dict(zip(("qps", "daily", "inFlight"), usage, strict=True))


def test_qps_throttling_lasts_one_window(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"qps": 1})
    headers, _ = _signed(handlers, _body(given.poe))
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("1", "0")
    _refused(aws, handlers, _body(given.poe), 429, "plan_throttled")
    given.clock.advance(1)  # the next one-second window
    _signed(handlers, _body(given.poe))


def test_a_lease_given_back_lets_the_next_signing_in(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"concurrency": 2})
    held = _use_up(handlers, given, {"concurrency": 2})
    _refused(aws, handlers, _body(given.poe), 429, "plan_throttled")
    wiring.container().quotas.release(held[0], refund=False)
    _signed(handlers, _body(given.poe))


def test_request_larger_than_max_artifact_bytes_is_refused_with_413(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"maxArtifactBytes": 4096})
    _refused(aws, handlers, None, 413, "artifact_too_large", raw=_padded(given.poe, 4097))
    assert _usage(given.plan) == NOTHING_CHARGED  # refused before reserving


def test_request_of_exactly_max_artifact_bytes_is_accepted(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"maxArtifactBytes": 4096})
    _, answer = _signed(handlers, raw=_padded(given.poe, 4096))
    assert answer["policy"]["maxArtifactBytes"] == 4096


# --- a request refused after its reservation gives it back -----------------------------------

#: A fault: break something (the fixtures at hand) and return the changes to the request body.
Fault = Callable[[Any, pytest.FixtureRequest], dict[str, Any]]


def _unsigned_release(aws: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"scannerImageDigest": request.getfixturevalue("unsigned_digest")}


def _kms_key_disabled(aws: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    aws.client("kms").disable_key(KeyId=aws.physical["SigningKey"]["KeyId"])
    return {}


@pytest.mark.parametrize(
    ("claims", "fault", "status", "code"),
    [
        # the PoE's claims, a fault → the refusal (the scanner is a 2027 release)
        pytest.param({}, _unsigned_release, 403, "release_untrusted", id="untrusted release"),
        pytest.param({"valid_release_year": 2026}, None, 403, "entitlement_denied", id="licence ends 2026"),
        pytest.param({}, _kms_key_disabled, 503, "signing_unavailable", id="refused by KMS"),
    ],
)
def test_request_refused_after_reserving_gives_back_its_units(
    aws: Any,
    handlers: Any,
    licensing: Any,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    claims: dict[str, Any],
    fault: Fault | None,
    status: int,
    code: str,
) -> None:
    given = _given(monkeypatch, licensing, **claims)
    changes = fault(aws, request) if fault else {}
    _refused(aws, handlers, _body(given.poe, **changes), status, code)
    assert _usage(given.plan) == NOTHING_CHARGED
    quota = _quota(handlers, given.poe)
    assert quota["usage"]["daily"] == 0 and quota["remaining"]["concurrency"] == 5


def test_signature_that_cannot_be_audited_is_not_charged(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not in the table above: with the audit table gone, no denial can be audited either."""
    given = _given(monkeypatch, licensing)
    aws.client("dynamodb").delete_table(TableName=aws.environment["SIGNER_AUDIT_TABLE"])
    status, _, answer = _sign(handlers, _body(given.poe))
    assert (status, answer["code"]) == (503, "audit_unavailable")
    assert _usage(given.plan) == NOTHING_CHARGED


def test_refused_request_leaves_the_daily_count_of_the_next_success_unchanged(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch, unsigned_digest: str
) -> None:
    given = _given(monkeypatch, licensing)
    _refused(aws, handlers, _body(given.poe, scannerImageDigest=unsigned_digest), 403, "release_untrusted")
    _, answer = _signed(handlers, _body(given.poe))
    assert (answer["policy"]["qpsRemaining"], answer["policy"]["dailyRemaining"]) == (9, 9999)


# --- leases free themselves ------------------------------------------------------------------


def test_abandoned_lease_is_reclaimed_after_lease_seconds(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN an invocation that took the only lease and crashed (it never releases)."""
    given = _given(monkeypatch, licensing, {"concurrency": 1})
    _use_up(handlers, given, {"concurrency": 1})
    _refused(aws, handlers, _body(given.poe), 429, "plan_throttled")
    given.clock.advance(LEASE_SECONDS - 1)
    _refused(aws, handlers, _body(given.poe), 429, "plan_throttled")
    given.clock.advance(2)
    _signed(handlers, _body(given.poe))


def test_abandoned_lease_never_holds_its_slot_longer_than_lease_seconds(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"concurrency": 1})
    _use_up(handlers, given, {"concurrency": 1})
    given.clock.advance(LEASE_SECONDS + 0.5)
    assert _quota(handlers, given.poe)["remaining"]["concurrency"] == 1
    _signed(handlers, _body(given.poe))


# --- the pipeline's own reservations (check_quota direct, then sign_dsse with it) ------------


def test_pipeline_reservation_over_the_daily_cap_raises_quota_exhausted(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"dailySignatures": 1})
    first = _reserve(handlers, authority, client_cert, given.poe)
    with pytest.raises(QuotaExhausted) as refused:
        _reserve(handlers, authority, client_cert, given.poe)
    assert refused.value.headers["Retry-After"] == str(86400 - int(given.clock.now()) % 86400)
    release = _release(authority, client_cert, first["reservation"])
    assert handlers["check_quota"](release) == {"released": True}
    assert _usage(given.plan) == NOTHING_CHARGED


def test_pipeline_reservation_larger_than_max_artifact_bytes_raises_artifact_too_large(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing, {"maxArtifactBytes": 4096})
    with pytest.raises(ArtifactTooLarge):
        _reserve(handlers, authority, client_cert, given.poe, 4097)
    assert _usage(given.plan) == NOTHING_CHARGED


def test_pipeline_signing_with_its_reservation_is_charged_once_and_frees_the_lease(
    aws: Any, handlers: Any, licensing: Any, authority: Any, client_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(monkeypatch, licensing)
    reserved = _reserve(handlers, authority, client_cert, given.poe)["reservation"]
    event = {
        "opToken": token_for(authority, client_cert),
        "request": _body(given.poe),
        "reservation": reserved,
    }
    answer = handlers["sign_dsse"](event)
    assert (answer["policy"]["qpsRemaining"], answer["policy"]["dailyRemaining"]) == (9, 9999)
    assert _usage(given.plan) == {"qps": 1, "daily": 1, "inFlight": 0}


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
    given = _given(monkeypatch, licensing)
    _reserve(handlers, authority, client_cert, given.poe)  # the other execution, still running
    reserved = _reserve(handlers, authority, client_cert, given.poe)["reservation"]
    request = _body(given.poe, scannerImageDigest=unsigned_digest)
    with pytest.raises(ReleaseUntrusted):
        handlers["sign_dsse"](
            {"opToken": token_for(authority, client_cert), "request": request, "reservation": reserved}
        )
    release = _release(authority, client_cert, reserved)
    assert handlers["check_quota"](release) == {"released": True}
    assert _usage(given.plan) == {"qps": 1, "daily": 1, "inFlight": 1}
    assert handlers["check_quota"](release) == {"released": False}  # a retried compensation: nothing
    assert _usage(given.plan) == {"qps": 1, "daily": 1, "inFlight": 1}


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
    assert _usage(plan) == NOTHING_CHARGED
    assert [r["error_code"] for r in aws.audit_records()] == ["internal_error"]
