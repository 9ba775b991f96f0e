"""Write the realistic events under ``events/`` (for ``sam local invoke``, the tests and the docs).

The events carry an example client certificate and an example OpTok bound to it, signed
by a throw-away Authority key: the tests substitute fresh tokens where they need an Allow.
Run ``python -m local.make_events`` to regenerate them.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from local.authority import LocalAuthority
from local.gateway import ACCOUNT, API_ID, REGION, STAGE, client_cert_context
from local.pki import DevPki
from local.scanner_release import SCANNER_DIGEST
from stellaops_signer.domain.binding import certificate_thumbprint

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
EXAMPLE_DIGEST = SCANNER_DIGEST  # the fixed local release (local/scanner_release.py)
SIGN_BODY = {
    "subject": [{"name": "scan/report.json", "digest": {"sha256": "a" * 64}}],
    "predicateType": "stella.ops/report@v1",
    "predicate": {"scanner": "stellaops/scanner", "findings": 3, "summary": {"critical": 0, "high": 1}},
    "scannerImageDigest": EXAMPLE_DIGEST,
    "poe": {"format": "jwt", "value": ""},  # minted below with the test Licensing key
    "options": {"signingMode": "kms", "returnBundle": "dsse"},
}


def _request_context(method: str, path: str, cert: dict[str, Any]) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "stage": STAGE,
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "resourcePath": path,
        "httpMethod": method,
        "path": path,
        "protocol": "HTTP/1.1",
        "domainName": "signer.example.com",
        "requestTimeEpoch": 1796774400000,
        "identity": {"sourceIp": "203.0.113.10", "userAgent": "stellaops-scanner/2.4.1", "clientCert": cert},
    }


def _headers(token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "Host": "signer.example.com",
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "X-Correlation-Id": "req-2027-06-01-0001",
        "X-StellaOps-Tenant": "tenant-a",
        **(extra or {}),
    }


TEST_LICENSING_KEY = ROOT / "tests" / "fixtures" / "licensing-test-only.key"


def main() -> None:
    from local.licensing import LocalLicensing

    licensing = LocalLicensing(TEST_LICENSING_KEY)
    SIGN_BODY["poe"]["value"] = licensing.mint(
        licensing.claims_for("tenant-a", "inst-1", now=1_795_000_000, exp=4_102_444_800)  # valid until 2100
    )
    with tempfile.TemporaryDirectory() as tmp:
        pki = DevPki(Path(tmp) / "pki")
        client = pki.issue("scanner-1")
        authority = LocalAuthority(Path(tmp) / "authority.key")
        cert = client_cert_context(client.pem())
        assert cert is not None
        now = int(time.time())
        token = authority.mint(
            {
                **authority.claims_for(
                    "scanner-1", cnf={"x5t#S256": certificate_thumbprint(client.pem())}, now=now
                )
            }
        )
    principal_context = {
        "sub": "scanner-1",
        "clientId": "scanner-1",
        "tid": "tenant-a",
        "inst": "inst-1",
        "scope": "signer.sign signer.verify",
        "binding": "mtls",
        "senderKey": certificate_thumbprint(cert["clientCertPem"]),
        "correlationId": "req-2027-06-01-0001",
        "principalId": "scanner-1",
        "integrationLatency": 12,
    }

    def authorizer_event(method: str, path: str) -> dict[str, Any]:
        headers = _headers(token)
        return {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/{method}{path}",
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": _request_context(method, path, cert),
        }

    def proxy_event(
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = _headers(token, extra)
        return {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {**_request_context(method, path, cert), "authorizer": principal_context},
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }

    files = {
        "authenticate/authorizer-sign-mtls.json": authorizer_event("POST", "/api/v1/signer/sign/dsse"),
        "authenticate/authorizer-keys-mtls.json": authorizer_event("GET", "/api/v1/signer/keys"),
        "authenticate/direct.json": {"opToken": token},
        "sign_dsse/sign-dsse.json": proxy_event(
            "POST", "/api/v1/signer/sign/dsse", SIGN_BODY, extra={"Idempotency-Key": "scan-2027-06-01-0001"}
        ),
        "sign_dsse/keys.json": proxy_event("GET", "/api/v1/signer/keys"),
        "sign_dsse/direct.json": {
            "opToken": token,
            "request": SIGN_BODY,
            "idempotencyKey": "scan-2027-06-01-0002",
        },
        "verify_release/verify-referrers.json": proxy_event(
            "GET", "/api/v1/signer/verify/referrers", query={"digest": EXAMPLE_DIGEST}
        ),
        "verify_release/direct.json": {"opToken": token, "digest": EXAMPLE_DIGEST},
        "check_quota/quota.json": proxy_event(
            "GET", "/api/v1/signer/quota", extra={"X-StellaOps-PoE": SIGN_BODY["poe"]["value"]}
        ),
        "check_quota/direct.json": {
            "action": "reserve",
            "opToken": token,
            "poe": SIGN_BODY["poe"],
            "artifactBytes": 2048,
        },
    }
    for name, event in files.items():
        path = EVENTS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(event, indent=2) + "\n")
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
