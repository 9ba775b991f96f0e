"""Every handler, invoked with every event file under events/ (what ``sam local invoke`` would send)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_signer.domain.binding import certificate_thumbprint
from stellaops_signer.domain.errors import InvalidToken
from tests.conftest import ROOT, load_event
from tests.functions.conftest import response_headers, verify_dsse

#: The functions' events (Step Functions execution inputs, under signing_pipeline/, are the pipeline's).
EVENT_FILES = sorted(
    str(p.relative_to(ROOT / "events"))
    for p in (ROOT / "events").rglob("*.json")
    if not str(p.relative_to(ROOT / "events")).startswith("signing_pipeline/")
)


def test_every_function_has_events_for_both_entry_shapes() -> None:
    for function in ("authenticate", "sign_dsse", "check_quota", "verify_release"):
        names = [n for n in EVENT_FILES if n.startswith(function + "/")]
        assert any(n.endswith("direct.json") for n in names), function
        assert any(not n.endswith("direct.json") for n in names), function


def _fresh_token_for_event(authority: Any, event: dict[str, Any]) -> str:
    """A valid token bound to the certificate the event file carries."""
    cert_pem = load_event("authenticate/authorizer-sign-mtls.json")["requestContext"]["identity"][
        "clientCert"
    ]["clientCertPem"]
    claims = authority.claims_for("scanner-1", cnf={"x5t#S256": certificate_thumbprint(cert_pem)})
    return authority.mint(claims)


@pytest.mark.parametrize("name", EVENT_FILES)
def test_handler_answers_its_event_file(name: str, aws: Any, handlers: Any, authority: Any) -> None:
    function = Path(name).parts[0]
    event = load_event(name)
    direct = name.endswith("direct.json")
    if function == "authenticate" and not direct:
        # As shipped the event's token is signed by a key this Authority does not publish: Deny.
        denied = handlers[function](event)
        assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert denied["context"]["errorCode"] == "invalid_token"
        event["headers"]["Authorization"] = "Bearer " + _fresh_token_for_event(authority, event)
        allowed = handlers[function](event)
        assert allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        assert allowed["context"]["tid"] == "tenant-a" and allowed["context"]["binding"] == "mtls"
        return
    if direct:
        with pytest.raises(InvalidToken):  # the shipped token is not from this Authority
            handlers[function](event)
        event["opToken"] = _fresh_token_for_event(authority, event)
        answer = handlers[function](event)
        if function == "authenticate":
            assert answer["principal"]["tid"] == "tenant-a" and answer["principal"]["binding"] == "iam"
        elif function == "verify_release":
            assert answer["verdict"]["trusted"] is True and answer["verdict"]["releaseYear"] == 2027
        elif function == "check_quota":
            assert answer["plan"] == "pro" and answer["reservation"]["license_id"] == "LIC-A-001"
            release = {"action": "release", "opToken": event["opToken"], "reservation": answer["reservation"]}
            assert handlers[function](release) == {"released": True}
        else:
            verify_dsse(answer["bundle"])
        return
    answer = handlers[function](event)
    body = json.loads(answer["body"])
    headers = response_headers(answer)
    assert headers["x-correlation-id"] == event["headers"]["X-Correlation-Id"]
    if function == "check_quota":
        assert answer["statusCode"] == 200, body
        assert body["plan"] == "pro" and body["licenseId"] == "LIC-A-001" and body["usage"]["daily"] == 0
    elif function == "verify_release":
        assert answer["statusCode"] == 200 and body["trusted"] is True, body
        assert body["releaseVersion"] == "2.4.1 (2027.06)" and body["source"] == "referrers"
    elif name.endswith("keys.json"):
        assert answer["statusCode"] == 200 and body["keys"][0]["jwk"]["crv"] == "P-256"
    else:
        assert answer["statusCode"] == 200, body
        verify_dsse(body["bundle"])
