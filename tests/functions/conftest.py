"""The function tier: each handler invoked in process, as Lambda would, with moto behind it."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from local.authority import LocalAuthority
from local.gateway import LambdaContext, client_cert_context, load_handler
from local.licensing import LocalLicensing, handler_for
from local.pki import Issued
from stellaops_signer import wiring
from stellaops_signer.domain.binding import certificate_thumbprint
from tests.conftest import load_event, poe_identity

FUNCTIONS = {
    "authenticate": "AuthenticateFunction",
    "sign_dsse": "SignDsseFunction",
    "check_quota": "CheckQuotaFunction",
    "verify_release": "VerifyReleaseFunction",
}

Handler = Callable[[dict[str, Any]], Any]


@pytest.fixture(scope="session")
def raw_handlers() -> dict[str, Handler]:
    """Each handler invoked with exactly the event it is given (the side doors: direct invocations,
    proxy-shaped events with hand-written contexts)."""
    loaded = {name: load_handler(f"functions/{name}", name) for name in FUNCTIONS}
    return {
        name: (lambda event, h=h, n=name: h(event, LambdaContext(FUNCTIONS[n]))) for name, h in loaded.items()
    }


@pytest.fixture(scope="session")
def handlers(raw_handlers: dict[str, Handler], authority: LocalAuthority) -> dict[str, Handler]:
    """Each handler, with proxy events delivered as API Gateway delivers them after its authorizer
    allowed the request: the Authorization header carries a valid token for the principal in
    ``requestContext.authorizer`` (minted fresh from that context; the functions verify it)."""
    return {
        name: (lambda event, h=h: h(as_authorized(event, authority) if "httpMethod" in event else event))
        for name, h in raw_handlers.items()
    }


def as_authorized(event: dict[str, Any], authority: LocalAuthority) -> dict[str, Any]:
    """The proxy event with a fresh token for the principal of its authorizer context (unchanged when
    the context names no principal, as for a request that never passed the authorizer)."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    if not context.get("sub") or not context.get("tid") or context.get("binding") not in ("mtls", "dpop"):
        return event
    cnf = {"x5t#S256" if context["binding"] == "mtls" else "jkt": context.get("senderKey", "")}
    claims = authority.claims_for("scanner-1", cnf=cnf)
    claims.update(
        sub=context["sub"],
        client_id=context.get("clientId", ""),
        tid=context["tid"],
        inst=context.get("inst", ""),
        scope=context.get("scope", ""),
    )
    scheme = "Bearer" if context["binding"] == "mtls" else "DPoP"
    event = copy.deepcopy(event)
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "authorization"}
    headers["Authorization"] = f"{scheme} {authority.mint(claims)}"
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    return event


def token_for(
    authority: LocalAuthority,
    cert: Issued | None,
    *,
    client: str = "scanner-1",
    headers: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """A fresh OpTok bound to ``cert``; ``overrides`` replace claims (None removes one)."""
    cnf = {"x5t#S256": certificate_thumbprint(cert.pem())} if cert else {"jkt": "A" * 43}
    claims = authority.claims_for(client, cnf=cnf)
    for name, value in overrides.items():
        name = name.replace("x5t_S256", "x5t#S256")
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return authority.mint(claims, headers=headers)


def authorizer_event(
    token: str | None,
    cert: Issued | None,
    *,
    scheme: str = "Bearer",
    method: str = "POST",
    path: str = "/api/v1/signer/sign/dsse",
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    event = copy.deepcopy(load_event("authenticate/authorizer-sign-mtls.json"))
    headers = {k: v for k, v in event["headers"].items() if k != "Authorization"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    headers.update(extra_headers or {})
    event.update(
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        httpMethod=method,
        path=path,
        resource=path,
        methodArn=f"arn:aws:execute-api:us-east-1:123456789012:local/v1/{method}{path}",
    )
    event["requestContext"]["identity"]["clientCert"] = client_cert_context(cert.pem()) if cert else None
    return event


def sign_event(
    body: Any,
    *,
    context: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """The sign_dsse proxy event of events/, with a new body, authorizer context or headers."""
    import json

    event = copy.deepcopy(load_event("sign_dsse/sign-dsse.json"))
    event["body"] = raw_body if raw_body is not None else json.dumps(body)
    if context is not None:
        event["requestContext"]["authorizer"] = context
    if headers is not None:
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    return event


def response_headers(answer: dict[str, Any]) -> dict[str, str]:
    """The headers of a proxy answer, lower-cased (the resolver answers ``multiValueHeaders``)."""
    headers = {k.lower(): str(v) for k, v in (answer.get("headers") or {}).items()}
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ", ".join(str(v) for v in values)
    return headers


def verify_dsse(bundle: dict[str, Any]) -> dict[str, Any]:
    """Verify the envelope with ``cryptography`` against the bundle's key; the Statement it signs."""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    envelope = bundle["dsse"]
    payload = base64.b64decode(envelope["payload"])
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(payload_type), payload_type, len(payload), payload)
    key = load_pem_public_key(bundle["signingIdentity"]["publicKeyPem"].encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256()))
    statement: dict[str, Any] = json.loads(payload)
    return statement


@dataclass
class Introspection:
    """The local Licensing's ``/license/introspect`` over plain HTTP, and the calls it received."""

    licensing: LocalLicensing
    calls: list[str] = field(default_factory=list)

    def revoke(self, poe: str) -> None:
        self.licensing.revoked.add(poe_identity(poe))


@pytest.fixture
def introspection(
    aws: Any, licensing: LocalLicensing, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Introspection]:
    """GIVEN the Signer configured with ``LicensingIntrospectUrl`` (the local Licensing over HTTP)."""
    seen = Introspection(licensing)

    class Counting(handler_for(licensing)):  # type: ignore[misc]
        def do_POST(self) -> None:
            seen.calls.append(self.path)
            super().do_POST()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/license/introspect"
    monkeypatch.setenv("SIGNER_LICENSING_INTROSPECT_URL", url)
    wiring.reset()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        licensing.revoked.clear()
        licensing.introspection_down = False
