"""A local stand-in for the Stella Ops Authority: a JWKS and a client-credentials token endpoint.

``POST /token`` (RFC 6749 §4.4) authenticates the client by its mTLS certificate
(RFC 8705 §2, ``tls_client_auth``: the certificate's CN names the client). With a ``DPoP``
proof header (RFC 9449 §5) the OpTok is bound to the proof's key (``cnf.jkt``, token type
``DPoP``); without one, to the certificate (``cnf.x5t#S256``, token type ``Bearer``). The
registered clients decide tenant, installation and the scopes a client may ask for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.x509.oid import NameOID

from local.pki import IssuerKey
from local.tls import JsonHandler, peer_certificate_pem
from stellaops_signer.domain.binding import certificate_thumbprint
from stellaops_signer.domain.dpop import verify_proof
from stellaops_signer.domain.errors import InvalidDpopProof

ISSUER = "https://authority.stellaops.local"
TOKEN_LIFETIME = 300

#: client id (certificate CN) → what the Authority knows of it.
CLIENTS: dict[str, dict[str, Any]] = {
    "scanner-1": {"tid": "tenant-a", "inst": "inst-1", "scopes": {"signer.sign", "signer.verify"}},
    "auditor-1": {"tid": "tenant-a", "inst": "inst-1", "scopes": {"signer.verify"}},
    "scanner-b": {"tid": "tenant-b", "inst": "inst-9", "scopes": {"signer.sign", "signer.verify"}},
}


class LocalAuthority:
    def __init__(self, key_path: Path, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        issuer_key = IssuerKey(key_path)
        self.key, self.kid, self.jwks = issuer_key.key, issuer_key.kid, issuer_key.jwks

    def mint(self, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary claims with the Authority key (tests use it to craft bad tokens too)."""
        return jwt.encode(
            dict(claims), self.key, algorithm="ES256", headers={"kid": self.kid, **(headers or {})}
        )

    def claims_for(
        self,
        client_id: str,
        *,
        cnf: Mapping[str, str],
        scopes: set[str] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        client = CLIENTS[client_id]
        now = int(now if now is not None else time.time())
        granted = client["scopes"] if scopes is None else (scopes & client["scopes"])
        return {
            "iss": self.issuer,
            "sub": client_id,
            "client_id": client_id,
            "aud": "signer",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": str(uuid.uuid4()),
            "scope": " ".join(sorted(granted)),
            "tid": client["tid"],
            "inst": client["inst"],
            "cnf": dict(cnf),
        }

    def token_for_certificate(
        self,
        cert_pem: str,
        requested_scopes: set[str] | None,
        dpop_proof: str | None = None,
        token_url: str = "",
    ) -> dict[str, Any]:
        """The client-credentials grant for the client whose certificate terminated TLS."""
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        client_id = str(common_names[0].value) if common_names else ""
        if client_id not in CLIENTS:
            return {"error": "invalid_client"}
        if dpop_proof is None:
            cnf, token_type = {"x5t#S256": certificate_thumbprint(cert_pem)}, "Bearer"
        else:
            try:
                proof = verify_proof(
                    dpop_proof,
                    method="POST",
                    url=token_url,
                    access_token=None,
                    expected_jkt=None,
                    now=time.time(),
                )
            except InvalidDpopProof as error:
                return {"error": "invalid_dpop_proof", "error_description": error.detail}
            cnf, token_type = {"jkt": proof.jkt}, "DPoP"
        claims = self.claims_for(client_id, cnf=cnf, scopes=requested_scopes)
        return {
            "access_token": self.mint(claims),
            "token_type": token_type,
            "expires_in": TOKEN_LIFETIME,
            "scope": claims["scope"],
        }


def handler_for(authority: LocalAuthority, base_url: str) -> type[BaseHTTPRequestHandler]:
    class AuthorityHandler(JsonHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/jwks.json":
                self.send_json(200, authority.jwks)
            else:
                self.send_json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            form = self.form()
            if self.path != "/token":
                return self.send_json(404, {"error": "not_found"})
            if form.get("grant_type") != ["client_credentials"]:
                return self.send_json(400, {"error": "unsupported_grant_type"})
            cert_pem = peer_certificate_pem(self)
            if cert_pem is None:
                return self.send_json(401, {"error": "invalid_client"})
            scopes = set(form["scope"][0].split()) if "scope" in form else None
            answer = authority.token_for_certificate(
                cert_pem, scopes, self.headers.get("DPoP"), token_url=base_url + "/token"
            )
            status = 200 if "error" not in answer else 401 if answer["error"] == "invalid_client" else 400
            self.send_json(status, answer)

    return AuthorityHandler
