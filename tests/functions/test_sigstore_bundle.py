"""``returnBundle: sigstore`` (spec §5.5): a Sigstore bundle v0.3 that an independent Sigstore
verifier (npm ``@sigstore/verify``, offline, key-based) accepts — and refuses when tampered."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ROOT, load_event
from tests.functions.conftest import sign_event

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
SCRIPT = ROOT / "tests" / "interop" / "sigstore_verify.mjs"


def sigstore_verify(
    tmp_path: Path, bundle: dict[str, Any], public_key_pem: str, hint: str
) -> subprocess.CompletedProcess[str]:
    assert (ROOT / "tests" / "interop" / "node_modules" / "@sigstore" / "verify").is_dir(), "run make test"
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    (tmp_path / "key.pem").write_text(public_key_pem)
    return subprocess.run(
        ["node", str(SCRIPT), str(tmp_path / "bundle.json"), str(tmp_path / "key.pem"), hint],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _signed(handlers: Any) -> dict[str, Any]:
    answer = handlers["sign_dsse"](
        sign_event({**BODY, "options": {"signingMode": "kms", "returnBundle": "sigstore"}})
    )
    assert answer["statusCode"] == 200, answer["body"]
    return json.loads(answer["body"])


def test_the_sigstore_bundle_verifies_with_sigstores_own_verifier(
    aws: Any, handlers: Any, tmp_path: Path
) -> None:
    body = _signed(handlers)
    bundle = body["sigstoreBundle"]
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["dsseEnvelope"] == body["bundle"]["dsse"]  # the very same envelope
    hint = bundle["verificationMaterial"]["publicKey"]["hint"]
    run = sigstore_verify(tmp_path, bundle, body["bundle"]["signingIdentity"]["publicKeyPem"], hint)
    assert run.returncode == 0, run.stderr


def test_a_tampered_payload_fails_sigstores_verifier(aws: Any, handlers: Any, tmp_path: Path) -> None:
    body = _signed(handlers)
    bundle = copy.deepcopy(body["sigstoreBundle"])
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    hint = bundle["verificationMaterial"]["publicKey"]["hint"]
    run = sigstore_verify(tmp_path, bundle, body["bundle"]["signingIdentity"]["publicKeyPem"], hint)
    assert run.returncode == 1 and "signature" in run.stderr.lower()


def test_another_key_fails_sigstores_verifier(aws: Any, handlers: Any, tmp_path: Path) -> None:
    body = _signed(handlers)
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    hint = body["sigstoreBundle"]["verificationMaterial"]["publicKey"]["hint"]
    assert sigstore_verify(tmp_path, body["sigstoreBundle"], other, hint).returncode == 1


def test_no_sigstore_bundle_unless_asked(aws: Any, handlers: Any) -> None:
    answer = handlers["sign_dsse"](sign_event(BODY))
    assert "sigstoreBundle" not in json.loads(answer["body"])
