"""sign_dsse through its handler: the §3.2 answer, the 4xx/5xx rows of §3.6, and the audit trail."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from stellaops_signer.domain.errors import InsufficientScope, InvalidRequest, InvalidToken
from tests.conftest import load_event, poe_identity
from tests.functions.conftest import response_headers, sign_event, token_for

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
CONTEXT = load_event("sign_dsse/sign-dsse.json")["requestContext"]["authorizer"]


def _call(handlers: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    answer = handlers["sign_dsse"](event)
    return answer["statusCode"], response_headers(answer), json.loads(answer["body"])


def _refused(handlers: Any, event: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    got_status, headers, body = _call(handlers, event)
    assert (got_status, body.get("code")) == (status, code), body
    assert headers["content-type"] == "application/problem+json"
    assert body["type"].endswith("/" + code) and body["status"] == status and body["correlationId"]
    return body


def verify_with_securesystemslib(bundle: dict[str, Any]) -> bytes:
    """Independent DSSE verification: securesystemslib's Envelope and ECDSA key."""
    envelope = Envelope.from_dict(copy.deepcopy(bundle["dsse"]))
    keyid = envelope.signatures and next(iter(envelope.signatures))
    public_key = load_pem_public_key(bundle["signingIdentity"]["publicKeyPem"].encode())
    key = SSlibKey.from_crypto(public_key, keyid=keyid, scheme="ecdsa-sha2-nistp256")
    verified = envelope.verify([key], 1)
    assert keyid in verified
    return envelope.pae()


def test_signing_request_returns_an_envelope_that_securesystemslib_verifies(aws: Any, handlers: Any) -> None:
    status, headers, body = _call(handlers, sign_event(BODY))
    assert status == 200, body
    verify_with_securesystemslib(body["bundle"])
    assert body["bundle"]["mode"] == "kms"
    assert body["bundle"]["signingIdentity"]["keyId"] == aws.physical["SigningKey"]["Arn"]
    assert body["bundle"]["signingIdentity"]["algorithm"] == "ECDSA_P256_SHA256"
    assert "certificateChain" not in body["bundle"]
    assert headers["x-correlation-id"] == "req-2027-06-01-0001"


def test_payload_is_the_rfc8785_canonical_statement(aws: Any, handlers: Any) -> None:
    _, _, body = _call(handlers, sign_event(BODY))
    payload = base64.b64decode(body["bundle"]["dsse"]["payload"])
    expected = rfc8785.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": BODY["subject"],
            "predicateType": BODY["predicateType"],
            "predicate": BODY["predicate"],
        }
    )
    assert payload == expected
    assert body["bundle"]["dsse"]["payloadType"] == "application/vnd.in-toto+json"


def test_equal_requests_give_identical_payload_bytes(aws: Any, handlers: Any) -> None:
    reordered = {k: BODY[k] for k in reversed(list(BODY))}
    reordered["predicate"] = {k: BODY["predicate"][k] for k in reversed(list(BODY["predicate"]))}
    first = _call(handlers, sign_event(BODY))[2]["bundle"]["dsse"]["payload"]
    second = _call(handlers, sign_event(reordered))[2]["bundle"]["dsse"]["payload"]
    assert first == second


def test_bundle_sha256_is_the_hash_of_the_canonical_bundle(aws: Any, handlers: Any) -> None:
    import hashlib

    _, _, body = _call(handlers, sign_event(BODY))
    assert body["bundleSha256"] == hashlib.sha256(rfc8785.dumps(body["bundle"])).hexdigest()


def test_large_payload_is_signed_as_a_digest(aws: Any, handlers: Any) -> None:
    big = {**BODY, "predicate": {"components": [{"name": f"pkg-{i}", "version": "1.0"} for i in range(5000)]}}
    sent: list[dict[str, Any]] = []
    kms = aws.client("kms")
    del kms  # the function builds its own client; watch every KMS Sign in this process instead
    from stellaops_signer import wiring

    client = wiring.container().key_signer._client  # type: ignore[attr-defined]
    client.meta.events.register(
        "provide-client-params.kms.Sign", lambda params, **_: sent.append(dict(params))
    )
    status, _, body = _call(handlers, sign_event(big))
    assert status == 200, body
    assert len(base64.b64decode(body["bundle"]["dsse"]["payload"])) > 4096
    assert [p["MessageType"] for p in sent] == ["DIGEST"] and len(sent[0]["Message"]) == 32
    verify_with_securesystemslib(body["bundle"])


def test_success_is_audited_after_signing_with_the_bundle_hash(aws: Any, handlers: Any) -> None:
    _, _, body = _call(handlers, sign_event(BODY))
    [record] = aws.audit_records()
    assert record["pk"] == body["auditId"] and record["decision"] == "allow"
    assert record["bundle_sha256"] == body["bundleSha256"]
    assert record["tenant"] == "tenant-a" and record["binding"] == "mtls"
    assert record["predicate_type"] == BODY["predicateType"]
    assert record["scanner_digest"] == BODY["scannerImageDigest"]
    assert BODY["poe"]["value"] not in json.dumps(record)

    assert record["poe_sha256"] == poe_identity(BODY["poe"]["value"])


@pytest.mark.parametrize(
    ("case", "raw"),
    [
        ("not JSON", "{not json"),
        ("a JSON array", "[]"),
        ("empty body", ""),
        ("duplicate member", '{"predicateType": "a", "predicateType": "b"}'),
    ],
)
def test_malformed_bodies_are_invalid_requests(aws: Any, handlers: Any, case: str, raw: str) -> None:
    _refused(handlers, sign_event(None, raw_body=raw), 400, "invalid_request")


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("bad digest", lambda b: b["subject"][0]["digest"].update(sha256="A" * 64)),
        ("md5 digest", lambda b: b["subject"][0].update(digest={"md5": "0" * 32})),
        ("no subjects", lambda b: b.update(subject=[])),
        (
            "1025 subjects",
            lambda b: b.update(
                subject=[{"name": f"s{i}", "digest": {"sha256": "a" * 64}} for i in range(1025)]
            ),
        ),
        ("duplicate subject names", lambda b: b.update(subject=b["subject"] * 2)),
        ("unknown field", lambda b: b.update(predicatetype="typo")),
        ("bad scanner digest", lambda b: b.update(scannerImageDigest="sha256:xyz")),
        ("predicate not an object", lambda b: b.update(predicate=[1, 2])),
        ("unknown signing mode", lambda b: b.update(options={"signingMode": "hsm"})),
        ("integer beyond I-JSON", lambda b: b["predicate"].update(big=2**60)),
    ],
)
def test_invalid_fields_are_refused_with_invalid_request(
    aws: Any, handlers: Any, case: str, change: Any
) -> None:
    body = copy.deepcopy(BODY)
    change(body)
    _refused(handlers, sign_event(body), 400, "invalid_request")


def test_predicate_type_outside_the_catalogue_is_refused(aws: Any, handlers: Any) -> None:
    _refused(
        handlers,
        sign_event({**BODY, "predicateType": "https://example.com/custom@v1"}),
        400,
        "unsupported_predicate_type",
    )


def test_token_without_the_sign_scope_is_refused(aws: Any, handlers: Any) -> None:
    _refused(
        handlers, sign_event(BODY, context={**CONTEXT, "scope": "signer.verify"}), 403, "insufficient_scope"
    )


def test_tenant_header_naming_another_tenant_is_refused(aws: Any, handlers: Any) -> None:
    headers = {**load_event("sign_dsse/sign-dsse.json")["headers"], "X-StellaOps-Tenant": "tenant-b"}
    _refused(handlers, sign_event(BODY, headers=headers), 403, "tenant_mismatch")


def test_request_without_an_authorizer_principal_is_refused(aws: Any, handlers: Any) -> None:
    _refused(handlers, sign_event(BODY, context={}), 401, "invalid_token")


def test_refusals_are_audited_and_store_nothing_else(aws: Any, handlers: Any) -> None:
    _refused(handlers, sign_event({**BODY, "subject": []}), 400, "invalid_request")
    _refused(
        handlers, sign_event(BODY, context={**CONTEXT, "scope": "signer.verify"}), 403, "insufficient_scope"
    )
    records = sorted(aws.audit_records(), key=lambda r: r["error_code"])
    assert [(r["decision"], r["error_code"]) for r in records] == [
        ("deny", "insufficient_scope"),
        ("deny", "invalid_request"),
    ]
    assert all("bundle_sha256" not in r for r in records)


def test_audit_store_failure_returns_no_bundle(aws: Any, handlers: Any) -> None:
    aws.client("dynamodb").delete_table(TableName=aws.environment["SIGNER_AUDIT_TABLE"])
    body = _refused(handlers, sign_event(BODY), 503, "audit_unavailable")
    assert "bundle" not in body


def test_kms_failure_is_signing_unavailable(aws: Any, handlers: Any) -> None:
    aws.client("kms").disable_key(KeyId=aws.physical["SigningKey"]["KeyId"])
    _refused(handlers, sign_event(BODY), 503, "signing_unavailable")


def test_unexpected_error_is_a_generic_500(aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from stellaops_signer.usecases import sign_dsse

    def explode(*_: Any) -> Any:
        raise RuntimeError("secret internals: arn:aws:kms:...")

    monkeypatch.setattr(sign_dsse, "pae", explode)
    body = _refused(handlers, sign_event(BODY), 500, "internal_error")
    assert "secret internals" not in json.dumps(body)


def test_keys_route_publishes_the_signing_key(aws: Any, handlers: Any) -> None:
    answer = handlers["sign_dsse"](load_event("sign_dsse/keys.json"))
    keys = json.loads(answer["body"])["keys"]
    _, _, signed = _call(handlers, sign_event(BODY))
    assert keys[0]["keyid"] == signed["bundle"]["dsse"]["signatures"][0]["keyid"]
    assert keys[0]["publicKeyPem"] == signed["bundle"]["signingIdentity"]["publicKeyPem"]


def test_direct_invocation_verifies_the_token_and_raises_typed_errors(
    aws: Any, handlers: Any, authority: Any, client_cert: Any
) -> None:
    event = {"opToken": token_for(authority, client_cert), "request": BODY}
    verify_with_securesystemslib(handlers["sign_dsse"](event)["bundle"])
    with pytest.raises(InvalidRequest):
        handlers["sign_dsse"]({**event, "request": {**BODY, "subject": []}})
    with pytest.raises(InsufficientScope):
        handlers["sign_dsse"]({**event, "opToken": token_for(authority, client_cert, scope="signer.verify")})
    with pytest.raises(InvalidToken):
        handlers["sign_dsse"]({**event, "opToken": token_for(authority, client_cert, aud="other")})
    with pytest.raises(InvalidToken):
        handlers["sign_dsse"]({"request": BODY})
