"""The end-to-end tier: the local stack (``python -m local.stack``) in its own process, over HTTPS + mTLS."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.authority import LocalAuthority
from local.client import SignerClient
from local.stack import free_port, stop_process
from tests.conftest import ROOT


def _wait_for(facts: Path, ports: tuple[int, ...], process: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the stack has written its facts (its last start-up step) and every port answers."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited with {process.returncode}")
        if facts.exists():
            with socket.socket() as a, socket.socket() as b:
                if all(s.connect_ex(("127.0.0.1", p)) == 0 for s, p in zip((a, b), ports, strict=True)):
                    return
        time.sleep(0.1)
    raise TimeoutError("the local stack did not start in time")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("local")
    port, authority_port, licensing_port = free_port(), free_port(), free_port()
    log = (directory / "stack.log").open("wb")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    environment.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.stack",
            "--dir",
            str(directory),
            "--port",
            str(port),
            "--authority-port",
            str(authority_port),
            "--licensing-port",
            str(licensing_port),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    try:
        _wait_for(directory / "stack.json", (port, authority_port), process, time.monotonic() + 60)
        info = json.loads((directory / "stack.json").read_text())
        info["dir"] = str(directory)
        _entitle_shared_body(directory)
        yield info
    finally:
        stop_process(process, grace=10)
        log.close()


def _entitle_shared_body(directory: Path) -> None:
    """The tests' shared request body carries a PoE of the stack's own Licensing (tenant-a).

    pytest may hold the module under two names (its own and ``tests.e2e…``): both get it.
    """
    from local.licensing import LocalLicensing

    licensing = LocalLicensing(directory / "licensing.key")
    poe = {"format": "jwt", "value": licensing.mint(licensing.claims_for("tenant-a", "inst-1"))}
    import tests.e2e.test_local_stack  # noqa: F401 - make sure one copy is loaded

    for name, module in list(sys.modules.items()):
        if name.endswith("test_local_stack") and hasattr(module, "BODY"):
            module.BODY["poe"] = poe


@pytest.fixture(scope="session")
def stack_authority(stack: dict[str, Any]) -> LocalAuthority:
    """The stack's own Authority key, to craft tokens the token endpoint would never issue."""
    return LocalAuthority(Path(stack["dir"]) / "authority.key")


@pytest.fixture
def client(stack: dict[str, Any]) -> SignerClient:
    return SignerClient(stack)


def session_for(stack: dict[str, Any], identity: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = stack["ca"]
    if identity:
        session.cert = (stack["clients"][identity]["cert"], stack["clients"][identity]["key"])
    return session
