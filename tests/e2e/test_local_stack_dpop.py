"""DPoP end to end: the local stack over HTTPS + mTLS, the client's proofs and the nonce dance."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from local.client import SignerClient
from tests.e2e.conftest import session_for
from tests.e2e.test_local_stack import BODY, SIGN, _problem

pytestmark = pytest.mark.e2e


def _dpop_refusal(answer: requests.Response, code: str) -> dict[str, Any]:
    body = _problem(answer, 401, code)
    assert answer.headers["WWW-Authenticate"].startswith(f'DPoP error="{code}"')
    assert 'algs="ES256 EdDSA"' in answer.headers["WWW-Authenticate"]
    assert answer.headers["DPoP-Nonce"]
    return body


def test_first_request_without_a_nonce_is_asked_for_one_then_succeeds(stack: dict[str, Any]) -> None:
    client = SignerClient(stack)
    token = client.token()
    url = stack["signer"] + SIGN
    assert client.dpop is not None
    first = client.http.post(
        url,
        json=BODY,
        timeout=10,
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": client.dpop.proof("POST", url, access_token=token),
        },
    )
    _dpop_refusal(first, "use_dpop_nonce")
    second = client.http.post(
        url,
        json=BODY,
        timeout=10,
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": client.dpop.proof("POST", url, access_token=token, nonce=first.headers["DPoP-Nonce"]),
        },
    )
    assert second.status_code == 200, second.text
    assert second.headers["DPoP-Nonce"]  # a fresh nonce on success too (RFC 9449 §8.2)


def test_the_client_retries_once_on_use_dpop_nonce(stack: dict[str, Any]) -> None:
    client = SignerClient(stack)
    assert client.nonce is None
    answer = client.call("POST", SIGN, client.token(), json=BODY)
    assert answer.status_code == 200, answer.text
    assert client.nonce == answer.headers["DPoP-Nonce"]


def test_a_proof_replayed_over_https_is_refused(stack: dict[str, Any]) -> None:
    client = SignerClient(stack)
    token = client.token()
    client.call("GET", "/api/v1/signer/keys", token)  # obtains a nonce
    url = stack["signer"] + SIGN
    assert client.dpop is not None
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": client.dpop.proof("POST", url, access_token=token, nonce=client.nonce),
    }
    assert client.http.post(url, json=BODY, headers=headers, timeout=10).status_code == 200
    body = _dpop_refusal(client.http.post(url, json=BODY, headers=headers, timeout=10), "invalid_dpop_proof")
    assert "already used" in body["detail"]


def test_a_proof_for_another_uri_is_refused(stack: dict[str, Any]) -> None:
    client = SignerClient(stack)
    token = client.token()
    client.call("GET", "/api/v1/signer/keys", token)
    assert client.dpop is not None
    proof = client.dpop.proof(
        "POST", stack["signer"] + "/api/v1/signer/quota", access_token=token, nonce=client.nonce
    )
    answer = client.http.post(
        stack["signer"] + SIGN,
        json=BODY,
        timeout=10,
        headers={"Authorization": f"DPoP {token}", "DPoP": proof},
    )
    _dpop_refusal(answer, "invalid_dpop_proof")


def test_a_dpop_bound_token_sent_as_bearer_is_refused(stack: dict[str, Any]) -> None:
    token = SignerClient(stack).token()
    answer = session_for(stack, "scanner-1").post(
        stack["signer"] + SIGN, json=BODY, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    body = _problem(answer, 401, "invalid_token")
    assert "DPoP" in body["detail"] and answer.headers["WWW-Authenticate"].startswith("Bearer ")


def test_a_dpop_request_without_a_proof_is_refused(stack: dict[str, Any]) -> None:
    token = SignerClient(stack).token()
    answer = session_for(stack, "scanner-1").post(
        stack["signer"] + SIGN, json=BODY, timeout=10, headers={"Authorization": f"DPoP {token}"}
    )
    _dpop_refusal(answer, "invalid_dpop_proof")


def test_the_mtls_binding_still_works_beside_dpop(stack: dict[str, Any]) -> None:
    client = SignerClient(stack, binding="mtls")
    answer = client.call("POST", SIGN, client.token(), json=BODY)
    assert answer.status_code == 200, answer.text
