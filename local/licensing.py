"""A local stand-in for Stella Ops Licensing: issues Proofs-of-Entitlement and answers
``POST /license/introspect`` (RFC 7662 style: ``token=<PoE>`` form-encoded → ``{"active": …}``).

``POST /license/poe`` issues the PoE of the calling installation: the client is identified by
its mTLS certificate, as at the Authority; an optional ``cnf_jkt`` form field binds the PoE
to the caller's DPoP key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.x509.oid import NameOID

from local.authority import CLIENTS
from local.pki import IssuerKey
from local.tls import JsonHandler, peer_certificate_pem
from stellaops_signer.domain.entitlement import poe_identity_of

ISSUER = "https://licensing.stellaops.local"
POE_LIFETIME = 3600

#: tenant → the dev licence of its installation. ``dev`` is a small plan to exhaust by hand.
LICENCES: dict[str, dict[str, Any]] = {
    "tenant-a": {
        "license_id": "LIC-A-001",
        "customer_id": "CUST-A",
        "plan": "pro",
        "valid_release_year": 2027,
    },
    "tenant-b": {
        "license_id": "LIC-B-001",
        "customer_id": "CUST-B",
        "plan": "dev",
        "valid_release_year": 2027,
    },
}


class LocalLicensing:
    def __init__(self, key_path: Path, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        issuer_key = IssuerKey(key_path)
        self.key, self.kid, self.jwks = issuer_key.key, issuer_key.kid, issuer_key.jwks
        #: Identities (spec §5.1) of revoked PoEs;
        #: ``introspection_down`` makes /license/introspect answer 503.
        self.revoked: set[str] = set()
        self.introspection_down = False

    def claims_for(
        self, tenant: str, installation: str, *, now: float | None = None, **overrides: Any
    ) -> dict[str, Any]:
        licence = LICENCES[tenant]
        now = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": licence["license_id"],
            "license_id": licence["license_id"],
            "customer_id": licence["customer_id"],
            "plan": licence["plan"],
            "tid": tenant,
            "inst": installation,
            "iat": now,
            "nbf": now,
            "exp": now + POE_LIFETIME,
            "valid_release_year": licence["valid_release_year"],
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(self, claims: Mapping[str, Any], *, key: Any = None) -> str:
        return jwt.encode(dict(claims), key or self.key, algorithm="ES256", headers={"kid": self.kid})

    def introspect(self, poe: str) -> dict[str, Any]:
        """Active unless revoked or not one of ours (signature, expiry)."""
        try:
            claims = jwt.decode(
                poe, self.key.public_key(), algorithms=["ES256"], options={"verify_aud": False}
            )
        except jwt.PyJWTError:
            return {"active": False}
        revoked = poe_identity_of(poe) in self.revoked
        return {
            "active": not revoked,
            "revoked": revoked,
            "license_id": claims.get("license_id"),
            "exp": claims.get("exp"),
        }


def handler_for(licensing: LocalLicensing) -> type[BaseHTTPRequestHandler]:
    class LicensingHandler(JsonHandler):
        def do_POST(self) -> None:
            form = self.form()
            if self.path == "/license/introspect":
                if licensing.introspection_down:
                    return self.send_json(503, {"error": "temporarily_unavailable"})
                return self.send_json(200, licensing.introspect(form.get("token", [""])[0]))
            if self.path != "/license/poe":
                return self.send_json(404, {"error": "not_found"})
            cert_pem = peer_certificate_pem(self)
            if cert_pem is None:
                return self.send_json(401, {"error": "invalid_client"})
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            client = CLIENTS.get(str(names[0].value) if names else "")
            if client is None or client["tid"] not in LICENCES:
                return self.send_json(403, {"error": "no_licence"})
            extra = {"cnf": {"jkt": form["cnf_jkt"][0]}} if "cnf_jkt" in form else {}
            poe = licensing.mint(licensing.claims_for(client["tid"], client["inst"], **extra))
            self.send_json(200, {"format": "jwt", "value": poe})

    return LicensingHandler
