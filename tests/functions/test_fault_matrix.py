"""The fault matrix (spec §8, §3.6) through the real ``sign_dsse`` handler: each dependency a signing
needs — KMS, the quota table, the audit table, the idempotency table, the payload bucket,
Licensing's introspection and its JWKS — throttled, failing, timing out or answering garbage.

Each row asserts the same three things:

- the §3.6 status and code, as problem+json (never a 500, never a bundle);
- the licence's counters are back to zero: whatever the request reserved was given back;
- the audit trail holds exactly one record for the request, a denial with that code (when the
  audit store is itself the fault: no ``allow`` record, since nothing can be written).

AWS faults are injected on the container's real clients with botocore's event system: a
``before-send`` hook answers every attempt of the targeted operation (and only of it: the quota,
audit and idempotency tables share one client, so the hook filters on the request's
``TableName`` and item key) with a crafted answer, or raises the timeout. botocore's standard
retries run for real (the container's ``max_attempts``), only without their backoff delays.
Licensing's faults come from the scripted HTTP server. Registry faults are the release matrix's
(tests/adapters).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.retries import standard

from stellaops_signer import wiring
from stellaops_signer.adapters.clock import FixedClock
from tests.conftest import load_event, poe_for
from tests.functions.conftest import response_headers, sign_event
from tests.http_double import ScriptedServer

EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(EVENT["body"])
#: The event's headers carry an Idempotency-Key; the unkeyed rows drop it.
KEYED = EVENT["headers"]
UNKEYED = {k: v for k, v in KEYED.items() if k != "Idempotency-Key"}
LICENCE = "LIC-A-001"
CORRELATION = KEYED["X-Correlation-Id"]

#: Where an injected answer claims to come from: moto's in-process stubber, another ``before-send``
#: handler that botocore calls after ours, answers only AWS URLs — so the crafted answer is the only
#: one and the operation never reaches moto's backend (a failed write stays unwritten).
INJECTED_URL = "https://fault-injected.invalid/"
INTROSPECT_PATH = "/license/introspect"
JWKS_PATH = "/license/jwks"
#: Longer than the Licensing clients' read timeout (3 s).
SLOWER_THAN_THE_CLIENT = 5.0

AWS_FAULTS = ("throttling", "5xx", "timeout", "malformed")
HTTP_FAULTS = ("throttling", "5xx", "timeout", "malformed", "surprising", "unreachable")


# --- AWS faults, as botocore receives them ----------------------------------------------------


class _Raw:
    """The ``raw`` of an AWSResponse: a body botocore streams."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _json_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()


def _s3_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"<RequestId>FAULT</RequestId></Error>"
    ).encode()


#: (status, content type, body) of each answered fault, per protocol.
_ANSWERS: dict[str, dict[str, tuple[int, str, bytes]]] = {
    "kms": {
        "throttling": (
            400,
            "application/x-amz-json-1.1",
            _json_error("ThrottlingException", "Rate exceeded"),
        ),
        "5xx": (500, "application/x-amz-json-1.1", _json_error("KMSInternalException", "internal error")),
        # A well-formed Sign answer whose signature (DER r = s = 1) is no signature by the key.
        "surprising": (
            200,
            "application/x-amz-json-1.1",
            json.dumps(
                {"Signature": base64.b64encode(bytes.fromhex("3006020101020101")).decode(), "KeyId": "k"}
            ).encode(),
        ),
    },
    "dynamodb": {
        "throttling": (
            400,
            "application/x-amz-json-1.0",
            _json_error(
                "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "Throughput exceeds the current capacity for one or more global secondary indexes",
            ),
        ),
        "5xx": (
            500,
            "application/x-amz-json-1.0",
            _json_error("com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error"),
        ),
    },
    "s3": {
        "throttling": (503, "application/xml", _s3_error("SlowDown", "Please reduce your request rate.")),
        "5xx": (500, "application/xml", _s3_error("InternalError", "We encountered an internal error.")),
    },
}
#: A 200 that is no answer of the service at all: what a misbehaving proxy in between sends.
_MALFORMED = (200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>")


def _fault(service: str, fault: str, request: AWSPreparedRequest) -> AWSResponse:
    if fault == "timeout":
        raise ReadTimeoutError(endpoint_url=request.url)
    status, content_type, body = _MALFORMED if fault == "malformed" else _ANSWERS[service][fault]
    request.url = INJECTED_URL
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    return AWSResponse(INJECTED_URL, status, headers, _Raw(body))


@dataclass
class Tap:
    """The attempts a ``_tap`` saw."""

    attempts: list[AWSPreparedRequest] = field(default_factory=list)


def _tap(
    client: Any,
    operation: str,
    where: Callable[[dict[str, Any]], bool] | None = None,
    *,
    fault: str | None = None,
) -> Tap:
    """Record every attempt of ``operation`` on ``client`` that ``where`` selects (by its JSON
    parameters); answer it with ``fault`` when one is given, else let moto answer it."""
    service = client.meta.service_model.service_id.hyphenize()
    tap = Tap()

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if where is not None and not where(json.loads(request.body or b"{}")):
            return None
        tap.attempts.append(request)
        return None if fault is None else _fault(service, fault, request)

    client.meta.events.register(f"before-send.{service}.{operation}", before_send)
    return tap


def _table(name: str, key_prefix: str = "") -> Callable[[dict[str, Any]], bool]:
    """Selects a DynamoDB request on table ``name`` (and on an item whose key starts with ``key_prefix``)."""

    def where(params: dict[str, Any]) -> bool:
        for part in params.get("TransactItems") or [params]:  # a transaction: any of its writes
            request = next(iter(part.values())) if "TransactItems" in params else part
            key = (request.get("Key") or request.get("Item") or {}).get("pk", {}).get("S", "")
            if request.get("TableName") == name and str(key).startswith(key_prefix):
                return True
        return False

    return where


# --- Licensing faults, as the scripted server answers them ------------------------------------


def _http_fault(server: ScriptedServer, path: str, fault: str | None, good: bytes) -> str:
    """Script ``path`` to misbehave as ``fault`` (None: answer ``good``); the URL the Signer is to use."""
    if fault == "unreachable":
        with socket.socket() as probe:  # a port nobody listens on: the connection is refused
            probe.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{probe.getsockname()[1]}{path}"
    if fault == "throttling":
        server.answer(path, 429, '{"error": "slow_down"}', headers={"Retry-After": "1"})
    elif fault == "5xx":
        server.answer(path, 503, '{"error": "temporarily_unavailable"}')
    elif fault == "timeout":
        server.answer(path, 200, good, delay=SLOWER_THAN_THE_CLIENT)
    elif fault == "malformed":
        server.answer(path, 200, _MALFORMED[2], headers={"Content-Type": "text/html"})
    elif fault == "surprising":  # well-formed JSON, but a list where an object is due
        server.answer(path, 200, b"[" + good + b"]")
    else:
        server.answer(path, 200, good)
    return server.base_url + path


# --- the request and its checks ---------------------------------------------------------------


@dataclass
class Setup:
    clock: FixedClock
    signs: Tap
    faulted: Tap | None = None
    #: A keyed request whose answer is larger than an idempotency record holds (the payload bucket).
    large: bool = False
    keyed: bool = False


def _freeze(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """Replace the container's clock before its adapters are built: one QPS window for the request
    and for the counters read afterwards."""
    clock = FixedClock(float(int(time.time())))
    monkeypatch.setattr(wiring.container(), "clock", clock)
    return clock


def _aws_target(dependency: str, aws: Any) -> tuple[Any, str, Callable[[dict[str, Any]], bool] | None]:
    """The client, operation and request filter a fault of ``dependency`` targets."""
    container, env = wiring.container(), aws.environment
    quota = env["SIGNER_QUOTA_TABLE"]
    if dependency == "KMS Sign":
        return container.key_signer._client, "Sign", None  # type: ignore[attr-defined]
    if dependency == "payload bucket":
        return container.payloads._client, "PutObject", None  # type: ignore[attr-defined]
    operation, where = {
        # one conditional write takes the second's unit, the day's and a lease (decision 0014)
        "quota reservation": ("UpdateItem", _table(quota, "licence#")),
        # the allow record is stored with the lease's release, in one transaction
        "audit": ("TransactWriteItems", _table(env["SIGNER_AUDIT_TABLE"])),
        "idempotency": ("PutItem", _table(env["SIGNER_IDEMPOTENCY_TABLE"])),
    }[dependency]
    return container.dynamodb, operation, where


def _arrange(
    dependency: str,
    fault: str | None,
    aws: Any,
    licensing: Any,
    server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    """GIVEN the Signer with ``dependency`` misbehaving as ``fault`` (None: behaving), and every KMS
    Sign counted."""
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    if dependency == "introspection":
        url = _http_fault(server, INTROSPECT_PATH, fault, b'{"active": true}')
        monkeypatch.setenv("SIGNER_LICENSING_INTROSPECT_URL", url)
    elif dependency == "licensing JWKS":
        url = _http_fault(server, JWKS_PATH, fault, json.dumps(licensing.jwks).encode())
        monkeypatch.setenv("SIGNER_LICENSING_JWKS", "")
        monkeypatch.setenv("SIGNER_LICENSING_JWKS_URL", url)
    wiring.reset()
    kms_fault = fault if dependency == "KMS Sign" else None
    setup = Setup(_freeze(monkeypatch), signs=_tap(*_aws_target("KMS Sign", aws), fault=kms_fault))
    if dependency == "KMS Sign":
        setup.faulted = setup.signs
    elif dependency not in ("introspection", "licensing JWKS"):
        setup.faulted = _tap(*_aws_target(dependency, aws), fault=fault)
    setup.keyed = dependency in ("idempotency", "payload bucket")
    setup.large = dependency == "payload bucket"
    return setup


def _request(setup: Setup, licensing: Any) -> dict[str, Any]:
    body = {**BODY, "poe": {"format": "jwt", "value": poe_for(licensing, now=setup.clock.now())}}
    if setup.large:  # ~250 KB of predicate, twice in the answer: over an idempotency record's 300 KiB
        body.update(predicate={"blob": "x" * 250_000}, options={"returnBundle": "sigstore"})
    return sign_event(body, headers=KEYED if setup.keyed else UNKEYED)


def _usage() -> dict[str, int]:
    container = wiring.container()
    usage: dict[str, int] = container.quotas.usage(LICENCE, container.settings.plans["pro"])
    return usage


#: dependency → (status, code, the faults it is put through): the matrix, as spec §3.6 reads.
MATRIX: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "KMS Sign": (503, "signing_unavailable", (*AWS_FAULTS, "surprising")),
    "quota reservation": (503, "signing_unavailable", AWS_FAULTS),
    "audit": (503, "audit_unavailable", AWS_FAULTS),
    "idempotency": (503, "signing_unavailable", AWS_FAULTS),
    "payload bucket": (503, "signing_unavailable", AWS_FAULTS),
    "introspection": (503, "entitlement_unavailable", HTTP_FAULTS),
    "licensing JWKS": (503, "entitlement_unavailable", HTTP_FAULTS),
}
ROWS = [
    (dependency, fault, status, code)
    for dependency, (status, code, faults) in MATRIX.items()
    for fault in faults
]
DEPENDENCIES = list(MATRIX)


@pytest.mark.parametrize(
    ("dependency", "fault", "status", "code"), ROWS, ids=[f"{row[0]}: {row[1]}" for row in ROWS]
)
def test_injected_fault_yields_its_code_gives_back_what_was_reserved_and_is_audited(
    aws: Any,
    handlers: Any,
    licensing: Any,
    scripted_server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch,
    dependency: str,
    fault: str,
    status: int,
    code: str,
) -> None:
    setup = _arrange(dependency, fault, aws, licensing, scripted_server, monkeypatch)

    answer = handlers["sign_dsse"](_request(setup, licensing))

    # THEN the dependency's code, as problem+json, and no bundle.
    body = json.loads(answer["body"])
    assert (answer["statusCode"], body.get("code")) == (status, code), body
    assert response_headers(answer)["content-type"] == "application/problem+json"
    assert body["type"].endswith("/" + code) and body["status"] == status
    assert "bundle" not in body and "sigstoreBundle" not in body
    # ... botocore retried what is worth retrying (a 200 is not).
    if setup.faulted is not None:
        assert len(setup.faulted.attempts) >= (1 if fault in ("malformed", "surprising") else 3)
    # ... a request that needs a store it cannot write is refused before anything is signed (§5.4).
    if dependency in ("idempotency", "payload bucket"):
        assert setup.signs.attempts == []
    # ... whatever it reserved is back.
    assert _usage() == {"qps": 0, "daily": 0, "inFlight": 0}
    # ... and the audit trail says what happened, once.
    records = aws.audit_records()
    if dependency == "audit":
        assert [r for r in records if r["decision"] == "allow"] == []
    else:
        assert [(r["decision"], r.get("error_code")) for r in records] == [("deny", code)], records
        assert records[0]["correlation_id"] == CORRELATION == body["correlationId"]
        assert "bundle_sha256" not in records[0]


@pytest.mark.parametrize("dependency", DEPENDENCIES)
def test_with_every_tap_in_place_and_no_fault_the_request_is_signed(
    aws: Any,
    handlers: Any,
    licensing: Any,
    scripted_server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch,
    dependency: str,
) -> None:
    """The control row: the matrix's wiring alone (the taps, the scripted Licensing, the large keyed
    request) signs once and is charged once — so each refusal above is its fault's doing."""
    setup = _arrange(dependency, None, aws, licensing, scripted_server, monkeypatch)

    answer = handlers["sign_dsse"](_request(setup, licensing))

    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200, body
    assert len(setup.signs.attempts) == 1
    if setup.faulted is not None:  # the tap selects requests that the signing really makes
        assert setup.faulted.attempts
    assert _usage() == {"qps": 1, "daily": 1, "inFlight": 0}
    assert [r["decision"] for r in aws.audit_records()] == ["allow"]
    if dependency in ("introspection", "licensing JWKS"):
        assert [path for _, path, _ in scripted_server.requests] == [
            INTROSPECT_PATH if dependency == "introspection" else JWKS_PATH
        ]
