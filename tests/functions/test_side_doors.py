"""The side doors (spec §5.2, §6): direct invocations and proxy-shaped events trust nothing they are
handed. Every step verifies the OpTok in its own input; a proxy event's authorizer context counts
only with a valid token for the same principal; reservations are sealed, bound to their tenant and
licence, used once for signing, and given back at most once.

The handlers are invoked with exactly the event given (``raw_handlers``): no gateway in front."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from stellaops_signer import wiring
from stellaops_signer.domain.errors import InvalidRequest, InvalidToken
from tests.conftest import load_event, poe_for
from tests.functions.conftest import as_authorized, token_for, verify_dsse

SIGN_EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(SIGN_EVENT["body"])
LICENCE = "LIC-A-001"


def _usage() -> dict[str, int]:
    container = wiring.container()
    return container.quotas.usage(LICENCE, container.settings.plans["pro"])


def _allowed() -> list[dict[str, Any]]:
    return [r for r in _audit() if r["decision"] == "allow"]


def _audit() -> list[dict[str, Any]]:
    table = wiring.container().settings.audit_table
    items = wiring.container().dynamodb.scan(TableName=table)["Items"]
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]


def _proxy(headers: dict[str, str] | None = None, **context: str) -> dict[str, Any]:
    """The shipped sign event (unkeyed) with its authorizer context changed by ``context``."""
    event = copy.deepcopy(SIGN_EVENT)
    sent = {k: v for k, v in event["headers"].items() if k != "Idempotency-Key"}
    event["headers"] = headers if headers is not None else sent
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["body"] = json.dumps({**BODY, "poe": {"format": "jwt", "value": _POE["value"]}})
    event["requestContext"]["authorizer"].update(context)
    return event


_POE: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _fresh_poe(licensing: Any) -> None:
    _POE["value"] = poe_for(licensing)


def _problem(answer: dict[str, Any]) -> tuple[int, str]:
    return answer["statusCode"], json.loads(answer["body"])["code"]


# --- proxy-shaped events ---------------------------------------------------------------------


def test_a_proxy_event_with_a_hand_written_context_and_no_token_is_refused(
    aws: Any, raw_handlers: Any
) -> None:
    event = _proxy(headers={"Content-Type": "application/json"})
    assert _problem(raw_handlers["sign_dsse"](event)) == (401, "invalid_token")
    assert _allowed() == [] and _usage()["daily"] == 0
    assert [r["error_code"] for r in _audit()] == ["invalid_token"]  # the refusal is audited


def test_a_proxy_event_carrying_its_stale_shipped_token_is_refused(aws: Any, raw_handlers: Any) -> None:
    # The event file's token is signed by a key this Authority does not publish.
    assert _problem(raw_handlers["sign_dsse"](_proxy())) == (401, "invalid_token")
    assert _allowed() == []


@pytest.mark.parametrize(
    "forged",
    [{"tid": "tenant-b"}, {"inst": "inst-9"}, {"sub": "auditor-1"}, {"scope": "signer.sign signer.admin"}],
    ids=["tenant", "installation", "subject", "scope"],
)
def test_a_context_that_differs_from_its_valid_token_is_refused(
    aws: Any, raw_handlers: Any, authority: Any, forged: dict[str, str]
) -> None:
    """GIVEN a valid token for scanner-1 of tenant-a WHEN the context claims anything else THEN 401."""
    event = as_authorized(_proxy(), authority)  # a token for exactly the shipped context
    event["requestContext"]["authorizer"].update(forged)
    assert _problem(raw_handlers["sign_dsse"](event)) == (401, "invalid_token")
    assert _allowed() == [] and _usage()["daily"] == 0


def test_a_token_with_fewer_scopes_than_its_context_claims_is_refused(
    aws: Any, raw_handlers: Any, authority: Any
) -> None:
    event = as_authorized(_proxy(scope="signer.verify"), authority)  # a verify-only token…
    event["requestContext"]["authorizer"]["scope"] = "signer.sign signer.verify"  # …dressed up
    assert _problem(raw_handlers["sign_dsse"](event)) == (401, "invalid_token")


def test_an_mtls_context_whose_certificate_is_not_the_tokens_is_refused(
    aws: Any, raw_handlers: Any, authority: Any, other_cert: Any
) -> None:
    from local.gateway import client_cert_context

    event = as_authorized(_proxy(), authority)
    event["requestContext"]["identity"]["clientCert"] = client_cert_context(other_cert.pem())
    assert _problem(raw_handlers["sign_dsse"](event)) == (401, "invalid_token")


def test_a_dpop_context_presented_with_the_bearer_scheme_is_refused(
    aws: Any, raw_handlers: Any, authority: Any
) -> None:
    event = as_authorized(_proxy(binding="dpop", senderKey="A" * 43), authority)
    token = event["headers"]["Authorization"].split(" ", 1)[1]
    event["headers"]["Authorization"] = event["multiValueHeaders"]["Authorization"][0] = f"Bearer {token}"
    assert _problem(raw_handlers["sign_dsse"](event)) == (401, "invalid_token")


@pytest.mark.parametrize("function", ["check_quota", "verify_release"])
def test_every_route_confirms_its_caller(aws: Any, raw_handlers: Any, function: str) -> None:
    event = load_event(
        "check_quota/quota.json" if function == "check_quota" else "verify_release/verify-referrers.json"
    )
    event["headers"].pop("Authorization")
    event["multiValueHeaders"].pop("Authorization", None)
    assert _problem(raw_handlers[function](event)) == (401, "invalid_token")


def test_the_keys_route_confirms_its_caller(aws: Any, raw_handlers: Any, authority: Any) -> None:
    event = load_event("sign_dsse/keys.json")
    assert _problem(raw_handlers["sign_dsse"](event)) == (401, "invalid_token")
    assert raw_handlers["sign_dsse"](as_authorized(event, authority))["statusCode"] == 200


def test_a_confirmed_proxy_event_signs(aws: Any, raw_handlers: Any, authority: Any) -> None:
    answer = raw_handlers["sign_dsse"](as_authorized(_proxy(), authority))
    assert answer["statusCode"] == 200, answer["body"]
    verify_dsse(json.loads(answer["body"])["bundle"])


# --- direct invocations: every step verifies its own token -----------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"request": BODY},
        {"opToken": "", "request": BODY},
        {"opToken": 42, "request": BODY},
        {"opToken": "not-a-jwt", "request": BODY},
    ],
    ids=["none", "empty", "not-a-string", "malformed"],
)
def test_a_direct_signing_without_a_valid_token_is_refused(aws: Any, raw_handlers: Any, event: Any) -> None:
    with pytest.raises(InvalidToken):
        raw_handlers["sign_dsse"](event)
    assert _allowed() == [] and _usage()["daily"] == 0


@pytest.mark.parametrize(
    "event",
    [{"action": "reserve", "artifactBytes": 10}, {"action": "release", "reservation": {}}],
    ids=["reserve", "release"],
)
def test_quota_steps_without_a_token_are_refused(aws: Any, raw_handlers: Any, event: Any) -> None:
    with pytest.raises(InvalidToken):
        raw_handlers["check_quota"](event)


@pytest.mark.parametrize("action", [None, "", "steal", "RESERVE", ["reserve"]])
def test_a_quota_step_that_is_neither_reserve_nor_release_is_refused(
    aws: Any, raw_handlers: Any, authority: Any, client_cert: Any, action: Any
) -> None:
    event = {"action": action, "opToken": token_for(authority, client_cert), "artifactBytes": 10}
    with pytest.raises(InvalidRequest, match="action must be reserve or release"):
        raw_handlers["check_quota"](event)
    with pytest.raises(InvalidToken):  # and the token is checked first: nothing is said to a stranger
        raw_handlers["check_quota"]({**event, "opToken": "not-a-token"})


# --- reservations: sealed, bound, single-use, released once ----------------------------------


def _reserve(raw_handlers: Any, token: str, poe: str) -> dict[str, Any]:
    answer = raw_handlers["check_quota"](
        {"action": "reserve", "opToken": token, "poe": {"format": "jwt", "value": poe}, "artifactBytes": 100}
    )
    reservation: dict[str, Any] = answer["reservation"]
    return reservation


def _sign_with(raw_handlers: Any, token: str, reservation: Any, poe: str | None = None) -> dict[str, Any]:
    request = {**BODY, "poe": {"format": "jwt", "value": poe or _POE["value"]}}
    answer: dict[str, Any] = raw_handlers["sign_dsse"](
        {"opToken": token, "request": request, "reservation": reservation}
    )
    return answer


@pytest.fixture
def token(authority: Any, client_cert: Any) -> str:
    return token_for(authority, client_cert)


def test_a_reservation_serves_exactly_one_signing(aws: Any, raw_handlers: Any, token: str) -> None:
    reservation = _reserve(raw_handlers, token, _POE["value"])
    verify_dsse(_sign_with(raw_handlers, token, reservation)["bundle"])
    for _ in range(3):
        with pytest.raises(InvalidRequest, match="already used"):
            _sign_with(raw_handlers, token, reservation)
    usage = _usage()
    assert len(_allowed()) == 1 and (usage["daily"], usage["inFlight"]) == (1, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("license_id", "LIC-NOBODY"),
        ("lease_id", "00000000-0000-0000-0000-000000000000"),
        ("lease_slot", 3),
        ("daily_used", 0),
        ("mac", "0" * 64),
        ("tenant", "tenant-b"),
    ],
)
def test_an_altered_reservation_is_refused(
    aws: Any, raw_handlers: Any, token: str, field: str, value: Any
) -> None:
    reservation = _reserve(raw_handlers, token, _POE["value"])
    if reservation[field] == value:  # the alteration must alter (a slot is drawn at random)
        value = value + 1 if isinstance(value, int) else value + "0"
    reservation = {**reservation, field: value}
    with pytest.raises(InvalidRequest, match=r"not authentic|another tenant"):
        _sign_with(raw_handlers, token, reservation)
    assert _allowed() == []


@pytest.mark.parametrize(
    "reservation",
    [[], "a-reservation", {"license_id": LICENCE}, {"license_id": LICENCE, "extra": 1}],
    ids=["a-list", "a-string", "missing-fields", "unknown-fields"],
)
def test_a_malformed_reservation_is_refused(
    aws: Any, raw_handlers: Any, token: str, reservation: Any
) -> None:
    with pytest.raises(InvalidRequest, match="malformed"):
        _sign_with(raw_handlers, token, reservation)


def test_a_reservation_of_another_tenant_is_refused(
    aws: Any, raw_handlers: Any, authority: Any, other_cert: Any, licensing: Any, token: str
) -> None:
    token_b = token_for(authority, other_cert, client="scanner-b")
    theirs = _reserve(raw_handlers, token_b, poe_for(licensing, "tenant-b", "inst-9"))
    with pytest.raises(InvalidRequest, match="another tenant"):
        _sign_with(raw_handlers, token, theirs)
    with pytest.raises(InvalidRequest, match="another tenant"):
        raw_handlers["check_quota"]({"action": "release", "opToken": token, "reservation": theirs})


def test_a_reservation_of_another_licence_is_refused(
    aws: Any, raw_handlers: Any, licensing: Any, token: str
) -> None:
    reservation = _reserve(raw_handlers, token, _POE["value"])
    other_licence = poe_for(licensing, license_id="LIC-A-002", sub="LIC-A-002")
    with pytest.raises(InvalidRequest, match="another licence"):
        _sign_with(raw_handlers, token, reservation, poe=other_licence)
    assert _allowed() == []


def _release(raw_handlers: Any, token: str, reservation: Any) -> Any:
    return raw_handlers["check_quota"]({"action": "release", "opToken": token, "reservation": reservation})


def test_releasing_twice_gives_back_once(aws: Any, raw_handlers: Any, token: str) -> None:
    _reserve(raw_handlers, token, _POE["value"])  # another execution, still holding its units
    reservation = _reserve(raw_handlers, token, _POE["value"])
    assert _usage()["daily"] == 2
    assert _release(raw_handlers, token, reservation) == {"released": True}
    for _ in range(4):
        assert _release(raw_handlers, token, reservation) == {"released": False}
    assert _usage()["daily"] == 1


def test_a_refund_after_a_successful_signing_changes_nothing(aws: Any, raw_handlers: Any, token: str) -> None:
    reservation = _reserve(raw_handlers, token, _POE["value"])
    _sign_with(raw_handlers, token, reservation)
    assert _release(raw_handlers, token, reservation) == {"released": False}
    usage = _usage()  # (the per-second count belongs to the second it was taken in)
    assert (usage["daily"], usage["inFlight"]) == (1, 0)


def test_a_released_reservation_cannot_sign(aws: Any, raw_handlers: Any, token: str) -> None:
    reservation = _reserve(raw_handlers, token, _POE["value"])
    _release(raw_handlers, token, reservation)
    with pytest.raises(InvalidRequest, match="given back"):
        _sign_with(raw_handlers, token, reservation)
    assert _allowed() == [] and _usage()["daily"] == 0


def test_a_forged_release_is_refused_and_gives_nothing_back(aws: Any, raw_handlers: Any, token: str) -> None:
    reservation = _reserve(raw_handlers, token, _POE["value"])
    with pytest.raises(InvalidRequest, match="not authentic"):
        _release(raw_handlers, token, {**reservation, "day": "1999-01-01"})
    assert _usage()["daily"] == 1
