"""A local stand-in for the Stella Ops Authority: a JWKS and a client-credentials token endpoint.

``POST /token`` (RFC 6749 §4.4) authenticates the client by its mTLS certificate
(RFC 8705 §2, ``tls_client_auth``: the certificate's CN names the client). With a ``DPoP``
proof header (RFC 9449 §5) the OpTok is bound to the proof's key (``cnf.jkt``, token type
``DPoP``); without one, to the certificate (``cnf.x5t#S256``, token type ``Bearer``). The
registered clients decide tenant, installation and the scopes a client may ask for.

The Signer itself is a second kind of client (spec §4 ``KeylessIdentityTokenUrl``): it
authenticates with a client secret (RFC 6749 §2.3.1, form fields or HTTP Basic) and receives,
beside its access token, an OIDC identity token (OpenID Connect Core §2) for Fulcio —
``aud`` "sigstore", subject and verified email ``signer@stellaops.local``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

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

#: The Signer's own client (client-secret authentication) and the identity its id_token names.
SIGNER_CLIENT_ID = "stellaops-signer"
SIGNER_IDENTITY = "signer@stellaops.local"
SIGSTORE_AUDIENCE = "sigstore"

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
        self.signer_client_secret = _client_secret(key_path.with_name(key_path.stem + ".signer-secret"))

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

    def identity_token_claims(self, now: float | None = None) -> dict[str, Any]:
        """The Signer's OIDC identity token for Fulcio (OpenID Connect Core §2): five minutes."""
        now = int(now if now is not None else time.time())
        return {
            "iss": self.issuer,
            "aud": SIGSTORE_AUDIENCE,
            "sub": SIGNER_IDENTITY,
            "email": SIGNER_IDENTITY,
            "email_verified": True,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
        }

    def token_for_client_secret(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """The client-credentials grant for the Signer (RFC 6749 §4.4, secret per §2.3.1): an
        access token and an id_token, or ``{"error": "invalid_client"}`` (§5.2)."""
        secret_matches = hmac.compare_digest(client_secret.encode(), self.signer_client_secret.encode())
        if client_id != SIGNER_CLIENT_ID or not secret_matches:
            return {"error": "invalid_client"}
        identity = self.identity_token_claims()
        access = {**identity, "client_id": client_id, "jti": str(uuid.uuid4())}
        return {
            "access_token": self.mint(access),
            "id_token": self.mint(identity),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
        }


def _client_secret(path: Path) -> str:
    """The Signer's client secret: created once beside the Authority key (0600), then reread, so
    every process that opens the same Authority (stack, tests) agrees on it."""
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def _secret_credentials(form: Mapping[str, list[str]], authorization: str | None) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from HTTP Basic or the form body (RFC 6749 §2.3.1), or None
    if the request uses neither (then it is the mTLS path). Raises ValueError for a request that
    uses both or a Basic header that does not decode."""
    basic = None
    if authorization is not None and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ValueError("malformed Basic credentials") from error
        client_id, separator, client_secret = decoded.partition(":")
        if not separator:
            raise ValueError("malformed Basic credentials")
        # §2.3.1: both are application/x-www-form-urlencoded before Basic encoding.
        basic = unquote_plus(client_id), unquote_plus(client_secret)
    in_form = "client_secret" in form or form.get("client_id") == [SIGNER_CLIENT_ID]
    if basic is not None and "client_secret" in form:
        raise ValueError("more than one client authentication method")  # §2.3
    if basic is not None:
        return basic
    if in_form:
        return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]
    return None


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
            authorization = self.headers.get("Authorization")
            try:
                credentials = _secret_credentials(form, authorization)
            except ValueError as error:
                return self.send_json(400, {"error": "invalid_request", "error_description": str(error)})
            if credentials is not None:
                answer = authority.token_for_client_secret(*credentials)
                if "error" not in answer:
                    return self.send_json(200, answer)
                # RFC 6749 §5.2: a client that tried HTTP Basic gets a Basic challenge with its 401.
                basic = authorization is not None and authorization[:6].lower() == "basic "
                challenge = {"WWW-Authenticate": 'Basic realm="stellaops"'} if basic else {}
                return self.send_json(401, answer, headers=challenge)
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
