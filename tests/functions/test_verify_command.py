"""``signer-client verify ANSWER [FILE…] --keys KEYS.json`` (spec §7): offline, against a saved ``/keys``
document. Answers made by the real sign handler (KMS and keyless, timestamped by the local TSA);
each refusal has a one-line reason and a non-zero exit."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.verify import Refused, verify_answer
from tests.conftest import ROOT, load_event
from tests.functions.conftest import sign_event

EVENT = load_event("sign_dsse/sign-dsse.json")
HEADERS = {k: v for k, v in EVENT["headers"].items() if k != "Idempotency-Key"}
CONTENT = b'{"findings": []}\n'


def _answer(handlers: Any, mode: str) -> dict[str, Any]:
    body = json.loads(EVENT["body"])
    body["subject"] = [{"name": "report.json", "digest": {"sha256": hashlib.sha256(CONTENT).hexdigest()}}]
    body["options"] = {"signingMode": mode}
    answer = handlers["sign_dsse"](sign_event(body, headers=HEADERS))
    assert answer["statusCode"] == 200, answer["body"]
    result: dict[str, Any] = json.loads(answer["body"])
    return result


@pytest.fixture
def keys(aws: Any, handlers: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(handlers["sign_dsse"](load_event("sign_dsse/keys.json"))["body"])
    return document


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_bytes(CONTENT)
    return path


def _cli(
    tmp_path: Path, answer: dict[str, Any], keys: dict[str, Any], *files: Path
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    command = [
        sys.executable,
        "-m",
        "local.client",
        "verify",
        str(tmp_path / "answer.json"),
        *map(str, files),
    ]
    return subprocess.run(
        [*command, "--keys", str(tmp_path / "keys.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("mode", ["kms", "keyless"])
def test_a_saved_answer_verifies_offline_and_says_what_who_and_when(
    handlers: Any, keys: dict[str, Any], report: Path, tmp_path: Path, mode: str
) -> None:
    answer = _answer(handlers, mode)
    run = _cli(tmp_path, answer, keys, report)
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip()
    assert line.startswith("verified: stella.ops/report@v1 signed by ") and " at 20" in line
    signer = "signer@stellaops.local" if mode == "keyless" else answer["bundle"]["signingIdentity"]["keyId"]
    assert signer in line and "Traceback" not in run.stderr


def _refused(answer: dict[str, Any], keys: dict[str, Any], files: tuple[Path, ...] = (), **when: Any) -> str:
    with pytest.raises(Refused) as refused:
        verify_answer(answer, keys, files, **when)
    reason = str(refused.value)
    assert "\n" not in reason
    return reason


def test_a_tampered_payload_is_refused(handlers: Any, keys: dict[str, Any], tmp_path: Path) -> None:
    answer = _answer(handlers, "kms")
    statement = json.loads(base64.b64decode(answer["bundle"]["dsse"]["payload"]))
    statement["predicate"]["findings"] = 0
    answer["bundle"]["dsse"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    assert "does not verify" in _refused(answer, keys)
    run = _cli(tmp_path, answer, keys)
    assert run.returncode == 1 and run.stderr.startswith("refused: ") and run.stderr.count("\n") == 1


def test_a_signature_by_an_unpublished_key_is_refused(handlers: Any, keys: dict[str, Any]) -> None:
    answer = _answer(handlers, "kms")
    other = copy.deepcopy(keys)
    other["keys"][0]["keyid"] = "another-key"
    assert "is not published" in _refused(answer, other)


def test_a_published_key_that_did_not_sign_is_refused(handlers: Any, keys: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    answer = _answer(handlers, "kms")
    other = copy.deepcopy(keys)
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    other["keys"][0]["publicKeyPem"] = stranger.public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    ).decode()
    assert "does not verify" in _refused(answer, other)


def test_a_file_that_is_not_a_subject_is_refused(handlers: Any, keys: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_bytes(b"{}")
    assert "other.json" in _refused(_answer(handlers, "kms"), keys, (other,))


def test_another_payload_type_is_refused(handlers: Any, keys: dict[str, Any]) -> None:
    answer = _answer(handlers, "kms")
    answer["bundle"]["dsse"]["payloadType"] = "text/plain"
    assert "payload type" in _refused(answer, keys)


def test_an_expired_keyless_chain_without_a_timestamp_is_refused(handlers: Any, keys: dict[str, Any]) -> None:
    answer = _answer(handlers, "keyless")
    answer["bundle"].pop("timestamps")
    later = datetime.now(UTC) + timedelta(minutes=11)
    assert "expired and no timestamp" in _refused(answer, keys, now=later)


def test_an_expired_keyless_chain_with_a_timestamp_inside_its_validity_verifies(
    handlers: Any, keys: dict[str, Any]
) -> None:
    answer = _answer(handlers, "keyless")
    later = datetime.now(UTC) + timedelta(days=400)
    verified = verify_answer(answer, keys, now=later)
    assert verified.signed_at is not None and verified.signed_at < datetime.now(UTC) + timedelta(minutes=1)


def test_a_timestamp_from_an_unpublished_authority_is_refused(
    handlers: Any, keys: dict[str, Any], tmp_path: Path
) -> None:
    from local.tsa import LocalTsa

    other = copy.deepcopy(keys)
    other["timestampAuthorities"] = [{"certificates": [LocalTsa(tmp_path / "other-tsa").chain_pem]}]
    assert "timestamp does not verify" in _refused(_answer(handlers, "kms"), other)


def test_a_keyless_chain_under_an_unpublished_ca_is_refused(
    handlers: Any, keys: dict[str, Any], tmp_path: Path
) -> None:
    from local.fulcio import LocalFulcio

    other = copy.deepcopy(keys)
    stranger = LocalFulcio(tmp_path / "other-ca", oidc_issuer="https://other", oidc_jwks={"keys": []})
    other["keyless"]["certificateAuthorities"] = [stranger.root_pem, stranger.intermediate_pem]
    assert "chain does not verify" in _refused(_answer(handlers, "keyless"), other)


def test_unreadable_inputs_are_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("{}")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.client",
            "verify",
            str(tmp_path / "missing.json"),
            "--keys",
            str(tmp_path / "keys.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        run.returncode == 2
        and run.stderr.startswith("refused: cannot read")
        and "Traceback" not in run.stderr
    )
