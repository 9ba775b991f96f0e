"""The containers tier (``make sam-local``): every function in its Lambda-like container.

One run of ``.ci/sam-local.sh`` (its own dockerd, the cached base image, moto on the bridge)
serves the whole module. The tier is marked ``containers``: ``pytest -m containers`` runs it on its
own, ``-m "not containers"`` keeps it out of the in-process run (docs/sam-local.md).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.conftest import ROOT

#: One run takes about 2 minutes with the cache, under 10 on a fresh machine (docs/sam-local.md).
RUN_TIMEOUT = 1200


@pytest.fixture(scope="module")
def sam_local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The results of one ``.ci/sam-local.sh`` run. A run that could not start docker (or anything
    else) fails the tier here: it is never skipped."""
    results = tmp_path_factory.mktemp("sam-local") / "results.json"
    completed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "sam-local.sh"), "--results", str(results)],
        cwd=ROOT,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert results.exists(), f".ci/sam-local.sh wrote no results (exit status {completed.returncode})"
    document: dict[str, Any] = json.loads(results.read_text())
    assert not document["error"], document["error"]
    return document


def answer_body(invocation: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a proxy answer."""
    body: dict[str, Any] = json.loads(invocation["answer"]["body"])
    return body
