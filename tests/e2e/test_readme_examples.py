"""The README's examples run as written (spec §7, issue 13): every ``sh`` block of "Calling the local
stack", against the e2e stack — only its directory and ports stand in for ``.local`` and
8443/8444/8445, and ``signer-client`` is told where that stack's facts are."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Calling the local stack", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def _as_run_against(block: str, stack: dict[str, Any]) -> str:
    directory = stack["dir"]
    ports = {
        "8443": str(urlsplit(stack["signer"]).port),
        "8444": str(urlsplit(stack["authority"]).port),
        "8445": str(urlsplit(stack["licensing"]).port),
    }
    text = block.replace(".local/", f"{directory}/")
    text = text.replace(
        ".venv/bin/signer-client", f"{ROOT}/.venv/bin/signer-client --stack {directory}/stack.json"
    )
    for default, port in ports.items():
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
    return text


def test_the_readme_has_its_examples() -> None:
    assert len(_examples()) >= 2


@pytest.mark.parametrize("index", range(2))
def test_each_readme_example_runs_as_written(stack: dict[str, Any], tmp_path: Path, index: int) -> None:
    block = _as_run_against(_examples()[index], stack)
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text())  # the file the examples sign
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"{block}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    assert "Traceback" not in run.stderr
    if index == 1:  # the curl signing answers a bundle
        assert '"bundle"' in run.stdout and '"auditId"' in run.stdout, run.stdout
    else:
        assert "verified: stella.ops/evidence@v1 signed by signer@stellaops.local" in run.stdout, run.stdout
