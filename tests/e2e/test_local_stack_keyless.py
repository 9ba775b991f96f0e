"""Keyless signing end to end (spec §7): the stack's Fulcio and TSA over HTTPS, ``signer-client sign
--mode keyless``, then ``signer-client verify`` offline against the saved ``/keys`` document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _client(stack_file: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.client", "--stack", str(stack_file), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keyless_sign_then_verify_offline(stack: dict[str, Any], tmp_path: Path) -> None:
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(json.dumps(stack))
    target = tmp_path / "report.json"
    target.write_text('{"findings": []}')
    answer = tmp_path / "answer.json"
    signed = _client(
        stack_file, "sign", str(target), "--mode", "keyless", "--bundle", "sigstore", "--out", str(answer)
    )
    assert signed.returncode == 0, signed.stderr
    saved = json.loads(answer.read_text())
    assert saved["bundle"]["mode"] == "keyless" and len(saved["bundle"]["timestamps"]) == 1
    keys = _client(stack_file, "keys")
    assert keys.returncode == 0, keys.stderr
    (tmp_path / "keys.json").write_text(keys.stdout)
    verified = _client(stack_file, "verify", str(answer), str(target), "--keys", str(tmp_path / "keys.json"))
    assert verified.returncode == 0, verified.stderr
    assert "signed by signer@stellaops.local" in verified.stdout
    target.write_text("changed")
    refused = _client(stack_file, "verify", str(answer), str(target), "--keys", str(tmp_path / "keys.json"))
    assert refused.returncode == 1 and "not among the signed subjects" in refused.stderr
