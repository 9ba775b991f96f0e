"""``signer-client``: sign a file through the Signer's HTTPS API and verify the answer.

Gets an OpTok from the Authority (client credentials over mTLS, bound to a DPoP key by
default), calls ``POST /api/v1/signer/sign/dsse`` with a DPoP proof per request (retrying
once when the Signer asks for a nonce) over mTLS, then verifies the DSSE envelope with the
key published at ``/api/v1/signer/keys`` and checks that the signed Statement names the
file's digest.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from local.dpop import DpopKey
from local.scanner_release import SCANNER_DIGEST

ROOT = Path(__file__).resolve().parent.parent
#: The scanner release the local stack publishes, signs and trusts.
LOCAL_SCANNER_DIGEST = SCANNER_DIGEST


class SignerClient:
    """Calls the Signer as a scanner would: DPoP-bound by default (a fresh proof per request,
    one retry when the server asks for a nonce), or certificate-bound (``binding="mtls"``)."""

    def __init__(self, stack: dict[str, Any], client: str = "scanner-1", binding: str = "dpop") -> None:
        self.stack = stack
        identity = stack["clients"][client]
        self.http = requests.Session()
        self.http.trust_env = False  # this machine sets REQUESTS_CA_BUNDLE: use our CA, not the env's
        self.http.verify = stack["ca"]
        self.http.cert = (identity["cert"], identity["key"])
        self.dpop = DpopKey() if binding == "dpop" else None
        #: The last DPoP-Nonce the Signer handed out (RFC 9449 §8).
        self.nonce: str | None = None

    def token(self, scope: str = "signer.sign") -> str:
        url = self.stack["authority"] + "/token"
        headers = {"DPoP": self.dpop.proof("POST", url)} if self.dpop else {}
        answer = self.http.post(
            url, data={"grant_type": "client_credentials", "scope": scope}, headers=headers, timeout=10
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def poe(self) -> dict[str, str]:
        """This installation's Proof-of-Entitlement from Licensing, bound to the DPoP key if any."""
        data = {"cnf_jkt": self.dpop.thumbprint} if self.dpop else {}
        answer = self.http.post(self.stack["licensing"] + "/license/poe", data=data, timeout=10)
        answer.raise_for_status()
        return dict(answer.json())

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        """One API call; with DPoP, retried once if the answer is ``use_dpop_nonce``."""
        url = self.stack["signer"] + path
        extra = kwargs.pop("headers", {})
        for attempt in (1, 2):
            headers = dict(extra)
            if self.dpop:
                headers["Authorization"] = f"DPoP {token}"
                headers["DPoP"] = self.dpop.proof(method, url, access_token=token, nonce=self.nonce)
            else:
                headers["Authorization"] = f"Bearer {token}"
            answer = self.http.request(method, url, headers=headers, timeout=30, **kwargs)
            self.nonce = answer.headers.get("DPoP-Nonce", self.nonce)
            challenge = answer.headers.get("WWW-Authenticate", "")
            if (
                attempt == 1
                and self.dpop
                and answer.status_code == 401
                and 'error="use_dpop_nonce"' in challenge
            ):
                continue
            return answer
        return answer

    def sign_file(self, path: Path, predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        body = {
            "subject": [{"name": path.name, "digest": {"sha256": digest}}],
            "predicateType": predicate_type,
            "predicate": predicate,
            "scannerImageDigest": LOCAL_SCANNER_DIGEST,
            "poe": self.poe(),
        }
        token = self.token()
        answer = self.call("POST", "/api/v1/signer/sign/dsse", token, json=body)
        if answer.status_code != 200:
            raise SystemExit(f"signing refused: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        keys = self.call("GET", "/api/v1/signer/keys", token).json()
        verify_bundle(result["bundle"], keys, expected_sha256=digest, name=path.name)
        return result


def verify_bundle(bundle: dict[str, Any], keys: dict[str, Any], *, expected_sha256: str, name: str) -> None:
    """Verify the DSSE signature (PAE, ECDSA P-256/SHA-256) and that the Statement names the file."""
    envelope = bundle["dsse"]
    payload = base64.b64decode(envelope["payload"])
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(payload_type), payload_type, len(payload), payload)
    published = {k["keyid"]: k for k in keys["keys"]}
    for signature in envelope["signatures"]:
        key = published.get(signature["keyid"])
        if key is None:
            raise SystemExit(f"signature by unpublished key {signature['keyid']}")
        public_key = load_pem_public_key(key["publicKeyPem"].encode())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        try:
            public_key.verify(base64.b64decode(signature["sig"]), pae, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SystemExit("the DSSE signature does not verify") from None
    statement = json.loads(payload)
    if statement["subject"] != [{"name": name, "digest": {"sha256": expected_sha256}}]:
        raise SystemExit("the signed Statement does not name this file")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="signer-client", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=ROOT / ".local" / "stack.json")
    parser.add_argument("--client", default="scanner-1", help="client certificate name under .local/pki")
    parser.add_argument("--binding", choices=("dpop", "mtls"), default="dpop", help="how the token is bound")
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser("sign", help="sign a file and verify the answer")
    sign.add_argument("file", type=Path)
    sign.add_argument("--predicate-type", default="stella.ops/evidence@v1")
    sign.add_argument("--predicate", type=Path, help="JSON file with the predicate (default: file facts)")
    sign.add_argument("--out", type=Path, help="write the whole answer here")
    sub.add_parser("keys", help="print the verification keys")
    args = parser.parse_args(argv)
    client = SignerClient(json.loads(args.stack.read_text()), args.client, args.binding)
    if args.command == "keys":
        print(json.dumps(client.call("GET", "/api/v1/signer/keys", client.token()).json(), indent=2))
        return
    predicate = (
        json.loads(args.predicate.read_text())
        if args.predicate
        else {"file": args.file.name, "size": args.file.stat().st_size}
    )
    result = client.sign_file(args.file, args.predicate_type, predicate)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    summary = {
        "verified": True,
        "auditId": result["auditId"],
        "bundleSha256": result["bundleSha256"],
        "keyid": result["bundle"]["dsse"]["signatures"][0]["keyid"],
    }
    json.dump(summary, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
