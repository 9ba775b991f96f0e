"""``returnBundle: sigstore`` (spec §5.5): Sigstore bundles v0.3, in both modes, that npm
``@sigstore/verify`` accepts under its default policy (a verified RFC 3161 timestamp; for a
certificate, a verified SCT and a chain to the trusted CA) with only the transparency-log
threshold at 0 — and refuses when anything is off. The trusted root is the local Fulcio's CA and
CT log and the local TSA's chain: the trust material a verifier of this installation holds."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stellaops_signer import wiring
from tests.conftest import ROOT, load_event
from tests.functions.conftest import sign_event

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
HEADERS = {
    k: v for k, v in load_event("sign_dsse/sign-dsse.json")["headers"].items() if k != "Idempotency-Key"
}
SCRIPT = ROOT / "tests" / "interop" / "sigstore_verify.mjs"


def sigstore_verify(
    tmp_path: Path, bundle: dict[str, Any], trusted_root: dict[str, Any], key: tuple[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert (ROOT / "tests" / "interop" / "node_modules" / "@sigstore" / "verify").is_dir(), "run make test"
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    (tmp_path / "root.json").write_text(json.dumps(trusted_root))
    arguments = [str(tmp_path / "bundle.json"), str(tmp_path / "root.json")]
    if key is not None:
        (tmp_path / "key.pem").write_text(key[0])
        arguments += [str(tmp_path / "key.pem"), key[1]]
    return subprocess.run(["node", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=30)


@pytest.fixture
def trusted_root(keyless: Any) -> dict[str, Any]:
    root: dict[str, Any] = keyless.fulcio.trusted_root([keyless.tsa.chain_pem])
    return root


def _signed(handlers: Any, mode: str) -> dict[str, Any]:
    body = {**BODY, "options": {"signingMode": mode, "returnBundle": "sigstore"}}
    answer = handlers["sign_dsse"](sign_event(body, headers=HEADERS))
    assert answer["statusCode"] == 200, answer["body"]
    return json.loads(answer["body"])


def _kms_key(body: dict[str, Any]) -> tuple[str, str]:
    return body["bundle"]["signingIdentity"]["publicKeyPem"], body["sigstoreBundle"]["verificationMaterial"][
        "publicKey"
    ]["hint"]


def test_a_kms_bundle_verifies_under_the_default_policy(
    aws: Any, handlers: Any, tmp_path: Path, trusted_root: dict[str, Any]
) -> None:
    body = _signed(handlers, "kms")
    bundle = body["sigstoreBundle"]
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["dsseEnvelope"] == body["bundle"]["dsse"]  # the very same envelope
    [stamp] = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    assert stamp["signedTimestamp"] == body["bundle"]["timestamps"][0]  # the whole TimeStampResp
    run = sigstore_verify(tmp_path, bundle, trusted_root, _kms_key(body))
    assert run.returncode == 0, run.stderr


def test_a_keyless_bundle_verifies_under_the_default_policy(
    aws: Any, handlers: Any, tmp_path: Path, trusted_root: dict[str, Any]
) -> None:
    body = _signed(handlers, "keyless")
    material = body["sigstoreBundle"]["verificationMaterial"]
    assert set(material) == {"certificate", "tlogEntries", "timestampVerificationData"}
    run = sigstore_verify(tmp_path, body["sigstoreBundle"], trusted_root)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["identity"]["subjectAlternativeName"] == "signer@stellaops.local"


@pytest.mark.parametrize("mode", ["kms", "keyless"])
def test_a_tampered_payload_fails_sigstores_verifier(
    aws: Any, handlers: Any, tmp_path: Path, trusted_root: dict[str, Any], mode: str
) -> None:
    body = _signed(handlers, mode)
    bundle = copy.deepcopy(body["sigstoreBundle"])
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    run = sigstore_verify(tmp_path, bundle, trusted_root, _kms_key(body) if mode == "kms" else None)
    assert run.returncode == 1 and "signature" in run.stderr.lower(), run.stderr


def test_another_key_fails_sigstores_verifier(
    aws: Any, handlers: Any, tmp_path: Path, trusted_root: dict[str, Any]
) -> None:
    body = _signed(handlers, "kms")
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    run = sigstore_verify(tmp_path, body["sigstoreBundle"], trusted_root, (other, _kms_key(body)[1]))
    assert run.returncode == 1


def test_a_keyless_bundle_under_another_ca_fails(
    aws: Any, handlers: Any, tmp_path: Path, trusted_root: dict[str, Any], keyless: Any
) -> None:
    from local.fulcio import LocalFulcio

    stranger = LocalFulcio(tmp_path / "other-ca", oidc_issuer="https://other", oidc_jwks={"keys": []})
    root = {**trusted_root, "certificateAuthorities": stranger.trusted_root()["certificateAuthorities"]}
    run = sigstore_verify(tmp_path, _signed(handlers, "keyless")["sigstoreBundle"], root)
    assert run.returncode == 1


def test_without_a_timestamp_the_default_policy_refuses(
    aws: Any, handlers: Any, tmp_path: Path, trusted_root: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the Signer timestamps: under the default policy a bundle without one does not verify."""
    monkeypatch.setenv("SIGNER_TIMESTAMP_AUTHORITY_URL", "")
    wiring.reset()
    body = _signed(handlers, "kms")
    assert "timestamps" not in body["bundle"]
    run = sigstore_verify(tmp_path, body["sigstoreBundle"], trusted_root, _kms_key(body))
    assert run.returncode == 1 and "expected 1 timestamps, got 0" in run.stderr


def test_no_sigstore_bundle_unless_asked(aws: Any, handlers: Any) -> None:
    answer = handlers["sign_dsse"](sign_event(BODY))
    assert "sigstoreBundle" not in json.loads(answer["body"])
