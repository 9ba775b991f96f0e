"""End to end over HTTPS with mutual TLS against the local stack (spec §7, §8)."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from local.client import LOCAL_SCANNER_DIGEST, SignerClient
from local.verify import verify_answer
from stellaops_signer.domain.binding import certificate_thumbprint
from tests.conftest import ROOT
from tests.e2e.conftest import session_for

pytestmark = pytest.mark.e2e
SIGN = "/api/v1/signer/sign/dsse"
BODY = {
    "subject": [{"name": "scan/report.json", "digest": {"sha256": "b" * 64}}],
    "predicateType": "stella.ops/sbom@v1",
    "predicate": {"bomFormat": "CycloneDX", "components": [{"name": "openssl", "version": "3.0.13"}]},
    "scannerImageDigest": LOCAL_SCANNER_DIGEST,
    "poe": {"format": "jwt", "value": "local-development-entitlement"},
}


def _problem(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    body = answer.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    assert answer.headers["X-Correlation-Id"] == body["correlationId"]
    return body


def _unauthorized(answer: requests.Response) -> dict[str, Any]:
    body = _problem(answer, 401, "invalid_token")
    assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    return body


def _cert_claims(stack: dict[str, Any], authority: Any, client: str = "scanner-1") -> dict[str, Any]:
    pem = Path(stack["clients"][client]["cert"]).read_text()
    return authority.claims_for(client, cnf={"x5t#S256": certificate_thumbprint(pem)})


def test_client_command_signs_a_file_end_to_end(stack: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text('{"findings": []}')
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    out = tmp_path / "answer.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.client",
            "--stack",
            str(tmp_path / "stack.json"),
            "sign",
            str(target),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["verified"] is True
    answer = json.loads(out.read_text())
    statement = json.loads(base64.b64decode(answer["bundle"]["dsse"]["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()


def test_sign_over_mtls_returns_a_verifiable_bundle(client: SignerClient) -> None:
    token = client.token()
    answer = client.call("POST", SIGN, token, json=BODY, headers={"X-Correlation-Id": "e2e-1"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Correlation-Id"] == "e2e-1"
    keys = client.call("GET", "/api/v1/signer/keys", token).json()
    verified = verify_answer(answer.json(), keys)
    assert verified.subjects == ("scan/report.json",) and verified.predicate_type == BODY["predicateType"]


def test_connection_without_a_client_certificate_is_refused_in_the_handshake(stack: dict[str, Any]) -> None:
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        session_for(stack, None).post(stack["signer"] + SIGN, json=BODY, timeout=10)


def test_client_certificate_from_another_ca_is_refused_in_the_handshake(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    from local.pki import DevPki

    stranger = DevPki(tmp_path / "other-pki").issue("scanner-1")
    session = session_for(stack, None)
    session.cert = (str(stranger.cert), str(stranger.key))
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        session.post(stack["signer"] + SIGN, json=BODY, timeout=10)


def test_token_bound_to_another_certificate_is_refused(stack: dict[str, Any], stack_authority: Any) -> None:
    token = stack_authority.mint(_cert_claims(stack, stack_authority, "scanner-b"))
    session = session_for(stack, "scanner-1")
    answer = session.post(
        stack["signer"] + SIGN, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert "another client certificate" in _unauthorized(answer)["detail"]


@pytest.mark.parametrize(("binding", "code"), [("mtls", "invalid_token"), ("dpop", "invalid_dpop_proof")])
def test_token_issued_to_another_client_cannot_be_used_by_this_one(
    stack: dict[str, Any], binding: str, code: str
) -> None:
    token = SignerClient(stack, "scanner-b", binding).token()
    answer = SignerClient(stack, "scanner-1", binding).call("POST", SIGN, token, json=BODY)
    _problem(answer, 401, code)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"aud": "attestor"}, id="wrong audience"),
        pytest.param({"aud": ["signer", "attestor"]}, id="multi audience"),
        pytest.param({"iss": "https://evil.example"}, id="wrong issuer"),
        pytest.param(
            {"exp": int(time.time()) - 120, "iat": int(time.time()) - 400, "nbf": int(time.time()) - 400},
            id="expired",
        ),
    ],
)
def test_tokens_breaking_a_claim_rule_are_refused(
    stack: dict[str, Any], stack_authority: Any, change: dict[str, Any]
) -> None:
    token = stack_authority.mint({**_cert_claims(stack, stack_authority), **change})
    answer = session_for(stack, "scanner-1").post(
        stack["signer"] + SIGN, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    _unauthorized(answer)


def test_alg_none_token_is_refused(stack: dict[str, Any], stack_authority: Any) -> None:
    token = jwt.encode(
        _cert_claims(stack, stack_authority), None, algorithm="none", headers={"kid": stack_authority.kid}
    )
    answer = session_for(stack, "scanner-1").post(
        stack["signer"] + SIGN, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    _unauthorized(answer)


def test_hs256_token_keyed_with_the_authority_public_key_is_refused(
    stack: dict[str, Any], stack_authority: Any
) -> None:
    import hmac

    from cryptography.hazmat.primitives import serialization

    from stellaops_signer.domain.jose import b64url

    secret = stack_authority.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "kid": stack_authority.kid}).encode())
    payload = b64url(json.dumps(_cert_claims(stack, stack_authority)).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    answer = session_for(stack, "scanner-1").post(
        stack["signer"] + SIGN,
        json=BODY,
        headers={"Authorization": f"Bearer {header}.{payload}.{b64url(mac)}"},
        timeout=10,
    )
    _unauthorized(answer)


def test_missing_token_is_refused(stack: dict[str, Any]) -> None:
    _unauthorized(session_for(stack, "scanner-1").post(stack["signer"] + SIGN, json=BODY, timeout=10))


def test_token_without_the_sign_scope_is_forbidden(stack: dict[str, Any]) -> None:
    auditor = SignerClient(stack, "auditor-1")
    _problem(auditor.call("POST", SIGN, auditor.token("signer.verify"), json=BODY), 403, "insufficient_scope")


def test_tenant_header_for_another_tenant_is_forbidden(client: SignerClient) -> None:
    answer = client.call("POST", SIGN, client.token(), json=BODY, headers={"X-StellaOps-Tenant": "tenant-b"})
    _problem(answer, 403, "tenant_mismatch")


@pytest.mark.parametrize("data", [b"{not json", b"[]", json.dumps({**BODY, "subject": []}).encode()])
def test_malformed_requests_are_400_not_500(client: SignerClient, data: bytes) -> None:
    answer = client.call(
        "POST", SIGN, client.token(), data=data, headers={"Content-Type": "application/json"}
    )
    _problem(answer, 400, "invalid_request")


def test_unknown_route_is_a_404_problem(client: SignerClient) -> None:
    answer = client.call("GET", "/api/v1/signer/admin", client.token())
    _problem(answer, 404, "not_found")


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "HEAD"])
@pytest.mark.parametrize("path", [SIGN, "/api/v1/signer/keys"])
def test_methods_without_a_route_are_404_like_api_gateway(
    client: SignerClient, method: str, path: str
) -> None:
    answer = client.call(method, path, client.token())
    assert answer.status_code == 404
    if method != "HEAD":
        _problem(answer, 404, "not_found")


def test_a_body_that_is_not_utf8_is_a_400_from_the_signer(client: SignerClient) -> None:
    answer = client.call(
        "POST", SIGN, client.token(), data=b"\x80", headers={"Content-Type": "application/json"}
    )
    assert "UTF-8" in _problem(answer, 400, "invalid_request")["detail"]


def _raw_request(stack: dict[str, Any], head: bytes) -> bytes:
    """One request written by hand over mutual TLS; the whole answer, until the server closes."""
    import socket

    context = ssl.create_default_context(cafile=stack["ca"])
    context.load_cert_chain(stack["clients"]["scanner-1"]["cert"], stack["clients"]["scanner-1"]["key"])
    host, port = stack["signer"].removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(head)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("length", "status"), [("abc", b"400"), ("-1", b"400"), (str(10 * 1024 * 1024 + 1), b"413")]
)
def test_a_malformed_or_oversized_content_length_is_answered_before_any_body(
    stack: dict[str, Any], length: str, status: bytes
) -> None:
    head = (
        f"POST {SIGN} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    answer = _raw_request(stack, head)  # no body sent: the server answers and closes
    assert answer.split(b" ", 2)[1] == status, answer[:200]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_is_at_least_1_2(stack: dict[str, Any]) -> None:
    import socket

    context = ssl.create_default_context(cafile=stack["ca"])
    context.load_cert_chain(stack["clients"]["scanner-1"]["cert"], stack["clients"]["scanner-1"]["key"])
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    host, port = stack["signer"].removeprefix("https://").split(":")
    with (
        pytest.raises((ssl.SSLError, OSError)),
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host),
    ):
        pass


def test_the_console_shows_one_access_line_per_request_and_nothing_else(stack: dict[str, Any]) -> None:
    """``make run``'s console for one signing: an access line per request (method, path, status,
    code, latency, correlation id) and no warnings, tracebacks or secrets."""
    log = Path(stack["dir"]) / "stack.log"
    before = log.read_bytes()
    client = SignerClient(stack)
    answer = client.call("POST", SIGN, client.token(), json=BODY)
    assert answer.status_code == 200, answer.text
    time.sleep(0.2)
    lines = log.read_bytes()[len(before) :].decode().splitlines()
    correlation = answer.headers["X-Correlation-Id"]
    assert lines and all(
        line.split(" ", 2)[:2] == ["POST", SIGN] and line.endswith(" ms " + line.rsplit(" ", 1)[-1])
        for line in lines
    ), lines
    assert lines[-1].startswith(f"POST {SIGN} 200 - ") and lines[-1].endswith(correlation), lines
    assert not any("Warning" in line or "Traceback" in line or "eyJ" in line for line in lines), lines
