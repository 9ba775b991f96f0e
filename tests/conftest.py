"""Fixtures for every tier: the dev PKI, the local Authority, moto provisioned from template.yaml."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local import moto_kms
from local.authority import LocalAuthority
from local.licensing import LocalLicensing
from local.pki import DevPki, Issued
from local.provision import Provisioner, load_template
from local.scanner_release import REPOSITORY, VERSION, publish_image
from local.stack import local_parameters, register_signer_identity
from stellaops_signer import wiring

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_BASE_URL = "https://signer.example.com"

# The tests never reach a real AWS account: credentials are fake and every client is moto's.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("AWS_PROFILE", None)


pytest_plugins = ["tests.registry_fixtures", "tests.moto_server", "tests.http_double"]


@dataclass(frozen=True)
class Release:
    """The release registry stand-in with the fixed scanner image, signed by ``key``."""

    registry: Any
    host: str
    key: Any
    digest: str

    @property
    def repository(self) -> str:
        return f"{self.host}/{REPOSITORY}"


@pytest.fixture(scope="session")
def release() -> Iterator[Release]:
    from local.registry import OciRegistry
    from local.release import HttpPusher, ReleaseKey, publish_signature

    registry = OciRegistry()
    base_url = registry.start()
    host = base_url.removeprefix("http://")
    key = ReleaseKey.generate()
    pusher = HttpPusher(base_url)
    digest = publish_image(pusher, REPOSITORY)
    publish_signature(
        pusher, f"{host}/{REPOSITORY}", REPOSITORY, digest, key, version=VERSION, mode="referrers"
    )
    yield Release(registry, host, key, digest)
    registry.stop()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def client_cert(pki: DevPki) -> Issued:
    return pki.issue("scanner-1")


@pytest.fixture(scope="session")
def other_cert(pki: DevPki) -> Issued:
    return pki.issue("scanner-b")


@pytest.fixture(scope="session")
def licensing() -> LocalLicensing:
    """The test Licensing stand-in; its key also signed the PoEs in events/ (tests/fixtures/README.md)."""
    return LocalLicensing(ROOT / "tests" / "fixtures" / "licensing-test-only.key")


def poe_for(
    licensing: LocalLicensing, tenant: str = "tenant-a", installation: str = "inst-1", **claims: Any
) -> str:
    """A fresh PoE; ``claims`` override (None removes one)."""
    return licensing.mint(licensing.claims_for(tenant, installation, **claims))


@pytest.fixture(scope="session")
def authority(tmp_path_factory: pytest.TempPathFactory) -> LocalAuthority:
    return LocalAuthority(tmp_path_factory.mktemp("authority") / "authority.key")


@dataclass(frozen=True)
class Keyless:
    """The local Fulcio, the Authority's token endpoint and the TSA, over plain HTTP on loopback."""

    fulcio: Any
    tsa: Any
    services: Any


@pytest.fixture(scope="session")
def keyless(authority: LocalAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyless]:
    import threading
    from http.server import ThreadingHTTPServer

    from local.authority import handler_for as authority_handler
    from local.fulcio import LocalFulcio
    from local.fulcio import handler_for as fulcio_handler
    from local.stack import KeylessServices
    from local.tsa import LocalTsa
    from local.tsa import handler_for as tsa_handler

    directory = tmp_path_factory.mktemp("keyless")
    fulcio = LocalFulcio(directory / "fulcio", oidc_issuer=authority.issuer, oidc_jwks=authority.jwks)
    tsa = LocalTsa(directory / "tsa")
    servers = []
    for handler in (fulcio_handler(fulcio), tsa_handler(tsa), None):
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler or authority_handler(authority, ""))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
    fulcio_url, tsa_url, authority_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    services = KeylessServices.serving(
        fulcio, tsa, fulcio_url=fulcio_url, tsa_url=tsa_url, authority_url=authority_url
    )
    yield Keyless(fulcio, tsa, services)
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class Aws:
    session: Any
    physical: dict[str, dict[str, str]]
    environment: dict[str, str]

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def audit_records(self) -> list[dict[str, Any]]:
        table = self.environment["SIGNER_AUDIT_TABLE"]
        items = self.client("dynamodb").scan(TableName=table)["Items"]
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]


@pytest.fixture
def aws(
    template: dict[str, Any],
    authority: LocalAuthority,
    release: Release,
    licensing: LocalLicensing,
    keyless: Keyless,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Aws]:
    """moto with the template's tables, key, secrets and buckets; the functions' environment set from
    it. Keyless signing (the local Fulcio) and RFC 3161 timestamps (the local TSA) are on."""
    from moto import mock_aws

    moto_kms.apply()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        session = wiring.aws_session()
        provisioner = Provisioner(
            session,
            template,
            local_parameters(
                PUBLIC_BASE_URL,
                authority,
                release.host,
                release.key.public_pem,
                licensing,
                keyless=keyless.services,
            ),
        )
        physical = provisioner.create_all()
        register_signer_identity(session, physical, authority)
        environment = provisioner.function_environment()
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SIGNER_REGISTRY_INSECURE_LOOPBACK", "true")
        wiring.reset()
        yield Aws(session, physical, environment)
    wiring.reset()


def poe_identity(poe: str) -> str:
    """A PoE's identity (spec §5.1), computed independently of the Signer: ``rfc8785`` over its decoded
    protected header and claims; for text that is no JWS of two JSON objects, the SHA-256 of the text."""
    import base64
    import hashlib

    import rfc8785

    try:
        header_b64, claims_b64, _ = poe.split(".")
        header, claims = (
            json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in (header_b64, claims_b64)
        )
        if isinstance(header, dict) and isinstance(claims, dict):
            return hashlib.sha256(rfc8785.dumps({"header": header, "claims": claims})).hexdigest()
    except ValueError:
        pass
    return hashlib.sha256(poe.encode()).hexdigest()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "events" / name).read_text())
