"""Registry fixtures for the release tests (spec §8, §10).

- ``oci_registry``: a started in-test OCI 1.1 registry with the Referrers API (per test).
- ``oci_registry_factory``: ``make(referrers_api=..., page_size=..., auth=...)`` → a started one.
- ``docker_registry``: the base URL of Debian's docker-registry 2.8 running as a real process
  on 127.0.0.1 with a config written here (one per session, i.e. per xdist worker).

Use them with ``from tests.registry_fixtures import docker_registry, oci_registry,
oci_registry_factory`` in a conftest (or ``pytest_plugins = ["tests.registry_fixtures"]`` in
the top-level one).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.registry import OciRegistry
from local.stack import stop_process

DOCKER_REGISTRY_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


@pytest.fixture
def oci_registry() -> Iterator[OciRegistry]:
    """A started in-test registry with the Referrers API; ``.base_url`` is its address."""
    with OciRegistry() as registry:
        yield registry


@pytest.fixture
def oci_registry_factory() -> Iterator[Callable[..., OciRegistry]]:
    """Build started in-test registries with options; all are stopped after the test."""
    started: list[OciRegistry] = []

    def make(**options: Any) -> OciRegistry:
        registry = OciRegistry(**options)
        registry.start()
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (no auth, filesystem storage in a tmp dir).

    Fails, never skips, when it is not installed: the release matrix must run against it.
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed: run `bash .ci/registry.sh` (as root)", pytrace=False)
    workdir = tmp_path_factory.mktemp("docker-registry")
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(DOCKER_REGISTRY_CONFIG.format(root=workdir / "storage", port=port))
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(process, base_url, workdir / "registry.log")
        yield base_url
    finally:
        stop_process(process, grace=10)
        log.close()


def _wait_until_serving(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"docker-registry exited ({process.returncode}): {log.read_text()[-2000:]}", pytrace=False
            )
        try:
            if session.get(f"{base_url}/v2/", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"docker-registry did not answer on {base_url} within 20 s", pytrace=False)
