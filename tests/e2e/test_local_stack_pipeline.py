"""SigningPipeline against the local stack (spec §6): ``signer-client pipeline`` starts an execution of
the real ASL in the stack's moto, its tasks running the functions, and prints each item's outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", ["batch.json", "single.json"])
def test_the_example_inputs_run_in_the_local_stack(stack: dict[str, Any], tmp_path: Path, name: str) -> None:
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    run = subprocess.run(
        [sys.executable, "-m", "local.client", "--stack", str(tmp_path / "stack.json"), "pipeline",
         str(ROOT / "events" / "signing_pipeline" / name)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == (3 if name == "batch.json" else 1)
    assert all(" signed (" in line for line in lines), lines
