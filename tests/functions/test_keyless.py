"""Keyless signing and RFC 3161 timestamps (spec §5.5) through the sign handler, against the local
Fulcio (Fulcio's API, embedded SCTs, the local Authority's identity tokens) and the local TSA.
Every answer is checked with independent code: cryptography for chains and signatures,
rfc3161-client for timestamps."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from stellaops_signer import wiring
from tests.conftest import load_event
from tests.functions.conftest import sign_event

EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(EVENT["body"])
HEADERS = {k: v for k, v in EVENT["headers"].items() if k != "Idempotency-Key"}


@pytest.fixture(autouse=True)
def _healthy(keyless: Any) -> Iterator[None]:
    """The shared stand-ins start and end each test healthy."""
    yield
    keyless.fulcio.fail_next.clear()
    keyless.fulcio.down = False
    for knob in ("down", "wrong_imprint", "wrong_nonce", "garbage"):
        setattr(keyless.tsa, knob, False)


def _sign(handlers: Any, mode: str = "keyless", **options: str) -> tuple[int, dict[str, Any]]:
    body = {**BODY, "options": {"signingMode": mode, **options}}
    answer = handlers["sign_dsse"](sign_event(body, headers=HEADERS))
    return answer["statusCode"], json.loads(answer["body"])


def _signed(handlers: Any, mode: str = "keyless", **options: str) -> dict[str, Any]:
    status, body = _sign(handlers, mode, **options)
    assert status == 200, body
    return body


def _leaf(body: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(body["bundle"]["certificateChain"][0].encode())


def _usage() -> dict[str, int]:
    container = wiring.container()
    return container.quotas.usage("LIC-A-001", container.settings.plans["pro"])


def _verify_signature(body: dict[str, Any], public_key: Any) -> None:
    envelope = body["bundle"]["dsse"]
    payload, payload_type = base64.b64decode(envelope["payload"]), envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(payload_type), payload_type, len(payload), payload)
    public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256()))


# --- keyless ------------------------------------------------------------------------------------


def test_a_keyless_signing_answers_the_chain_and_the_identity(aws: Any, handlers: Any, keyless: Any) -> None:
    body = _signed(handlers)
    bundle = body["bundle"]
    assert bundle["mode"] == "keyless"
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in bundle["certificateChain"]]
    leaf, intermediate, root = chain
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert root.subject == x509.load_pem_x509_certificate(keyless.fulcio.root_pem.encode()).subject
    _verify_signature(body, leaf.public_key())
    identity = bundle["signingIdentity"]
    assert identity["subject"] == "signer@stellaops.local"
    assert identity["issuer"] == "https://authority.stellaops.local"
    assert identity["certExpiry"] == leaf.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() <= 600
    [record] = [r for r in aws.audit_records() if r["decision"] == "allow"]
    assert record["mode"] == "keyless" and record["certificate_serial"] == format(leaf.serial_number, "x")
    assert "key_id" not in record


def test_every_keyless_signing_has_a_fresh_key_and_certificate(aws: Any, handlers: Any) -> None:
    first, second = _leaf(_signed(handlers)), _leaf(_signed(handlers))
    assert first.serial_number != second.serial_number
    assert first.public_key().public_numbers() != second.public_key().public_numbers()  # type: ignore[union-attr]


def test_a_reuse_window_keeps_one_key_for_its_signings(
    aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNER_KEYLESS_KEY_REUSE_SECONDS", "60")
    wiring.reset()
    assert _leaf(_signed(handlers)).serial_number == _leaf(_signed(handlers)).serial_number


def test_the_identity_token_is_fetched_once_and_cached(aws: Any, handlers: Any, keyless: Any) -> None:
    before = len(keyless.fulcio.requests)
    for _ in range(3):
        _signed(handlers)
    tokens = {json.dumps(body) for _, body in keyless.fulcio.requests[before:]}
    assert len(keyless.fulcio.requests) - before == 3  # one certificate per signing…
    signer = wiring.container().keyless_signer
    assert signer._identity._cached is not None  # type: ignore[attr-defined]  # …one token for all
    assert len(tokens) == 3  # (the logged requests differ by their keys and proofs)


def test_fulcio_5xx_is_retried_then_signs(aws: Any, handlers: Any, keyless: Any) -> None:
    before = len(keyless.fulcio.requests)
    keyless.fulcio.fail_next.extend([503, 502])
    _signed(handlers)
    assert len(keyless.fulcio.requests) - before == 3


def test_fulcio_4xx_is_not_retried(aws: Any, handlers: Any, keyless: Any) -> None:
    before = len(keyless.fulcio.requests)
    keyless.fulcio.fail_next.append(400)
    status, body = _sign(handlers)
    assert (status, body["code"]) == (503, "signing_unavailable") and "bundle" not in body
    assert len(keyless.fulcio.requests) - before == 1
    assert _usage()["daily"] == 0


def test_fulcio_down_is_signing_unavailable_and_gives_the_quota_back(
    aws: Any, handlers: Any, keyless: Any
) -> None:
    keyless.fulcio.down = True
    status, body = _sign(handlers)
    assert (status, body["code"]) == (503, "signing_unavailable")
    assert _usage()["daily"] == 0 and _usage()["inFlight"] == 0
    assert [r["error_code"] for r in aws.audit_records()] == ["signing_unavailable"]


def test_a_chain_not_under_the_configured_root_is_refused(
    aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from local.fulcio import LocalFulcio

    stranger = LocalFulcio(tmp_path / "stranger", oidc_issuer="https://other", oidc_jwks={"keys": []})
    monkeypatch.setenv("SIGNER_FULCIO_ROOT_CERTIFICATES", stranger.chain_pem)
    wiring.reset()
    status, body = _sign(handlers)
    assert (status, body["code"]) == (503, "signing_unavailable") and "does not verify" in body["detail"]


def test_a_proof_of_possession_by_another_key_is_refused_by_the_ca(keyless: Any, authority: Any) -> None:
    from stellaops_signer.adapters.keyless import FulcioClient
    from stellaops_signer.domain.errors import SigningUnavailable

    token = authority.mint(authority.identity_token_claims())
    ours, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pem = _pem(ours)
    proof = other.sign(b"signer@stellaops.local", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(SigningUnavailable, match="refused"):
        FulcioClient(keyless.services.fulcio_url).signing_certificate(token, pem, proof)


def _pem(key: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return str(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode())


def test_keyless_is_refused_where_no_ca_is_configured(
    aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNER_FULCIO_URL", "")
    wiring.reset()
    status, body = _sign(handlers)
    assert (status, body["code"]) == (400, "invalid_request") and "keyless" in body["detail"]


def test_the_payload_is_the_same_bytes_in_both_modes(aws: Any, handlers: Any) -> None:
    kms, keyless_ = _signed(handlers, "kms"), _signed(handlers, "keyless")
    assert kms["bundle"]["dsse"]["payload"] == keyless_["bundle"]["dsse"]["payload"]


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["kms", "keyless"])
def test_every_signature_is_timestamped_by_the_tsa(aws: Any, handlers: Any, keyless: Any, mode: str) -> None:
    body = _signed(handlers, mode)
    [encoded] = body["bundle"]["timestamps"]
    response = decode_timestamp_response(base64.b64decode(encoded))
    signature = base64.b64decode(body["bundle"]["dsse"]["signatures"][0]["sig"])
    tsa_root = x509.load_pem_x509_certificate(keyless.tsa.root_pem.encode())
    VerifierBuilder(roots=[tsa_root]).build().verify_message(response, signature)
    assert response.tst_info.message_imprint.message == hashlib.sha256(signature).digest()
    assert abs((response.tst_info.gen_time - datetime.now(UTC)).total_seconds()) < 60


@pytest.mark.parametrize("fault", ["down", "wrong_imprint", "wrong_nonce", "garbage"])
def test_a_failing_or_lying_tsa_is_signing_unavailable(
    aws: Any, handlers: Any, keyless: Any, fault: str
) -> None:
    setattr(keyless.tsa, fault, True)
    status, body = _sign(handlers, "kms")
    assert (status, body["code"]) == (503, "signing_unavailable") and "bundle" not in body
    assert _usage()["daily"] == 0
    assert not [r for r in aws.audit_records() if r["decision"] == "allow"]


def test_keys_publish_the_keyless_cas_and_the_tsa_chain(aws: Any, handlers: Any, keyless: Any) -> None:
    answer = handlers["sign_dsse"](load_event("sign_dsse/keys.json"))
    document = json.loads(answer["body"])
    assert document["keyless"]["enabled"] is True
    published = "".join(document["keyless"]["certificateAuthorities"])
    assert (
        keyless.fulcio.root_pem.strip() in published and keyless.fulcio.intermediate_pem.strip() in published
    )
    tsa = "".join(document["timestampAuthorities"][0]["certificates"])
    assert keyless.tsa.root_pem.strip() in tsa and keyless.tsa.leaf_pem.strip() in tsa
