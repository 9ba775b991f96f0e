"""The release check (spec §5.3) against registries: the in-test OCI 1.1 registry (Referrers
API) and Debian's docker-registry 2.8 (tag-schema fallback), with releases pushed by a real
client (skopeo) and over the distribution API. One test per row of the §8 release matrix."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.registry import OciRegistry
from local.release import (
    HttpPusher,
    ReleaseKey,
    publish_scanner_image,
    publish_signature,
    simple_signing_payload,
)
from local.skopeo import SkopeoPusher
from stellaops_signer.adapters.cache import InMemoryCache
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.registry import RegistryClient
from stellaops_signer.domain.errors import InvalidRequest, ReleaseUnverifiable
from stellaops_signer.domain.release import parse_trusted_keys
from stellaops_signer.usecases.verify_release import ReleaseVerifier

REPO = "stellaops/scanner"
VERSION = "2.4.1 (2027.06)"
RELEASE_KEY = ReleaseKey.generate()
SECOND_RELEASE_KEY = ReleaseKey.generate()
STRANGER = ReleaseKey.generate()


@dataclass
class Setup:
    """A registry, a way to push to it, and how signatures are attached there."""

    base_url: str
    pusher: Any
    mode: str  # "referrers" (OCI 1.1) or "tag" / "referrers-tag" (the fallback schema)
    registry: OciRegistry | None = None

    @property
    def host(self) -> str:
        return self.base_url.removeprefix("http://")

    def verifier(self, keys: tuple[ReleaseKey, ...] = (RELEASE_KEY,), **client: Any) -> ReleaseVerifier:
        trusted = parse_trusted_keys("".join(k.public_pem for k in keys))
        registry = RegistryClient(allow_list=[self.host], insecure_loopback=True, **client)
        clock = FixedClock(1_800_000_000)
        return ReleaseVerifier(
            registry=registry,
            keys=trusted,
            scanner_repositories=[f"{self.host}/{REPO}"],
            allow_list=[self.host],
            cache=InMemoryCache(clock),
            clock=clock,
        )

    def image(self) -> str:
        return publish_scanner_image(self.pusher, REPO)

    def sign(self, digest: str, key: ReleaseKey | None = RELEASE_KEY, **options: Any) -> None:
        options.setdefault("version", VERSION)
        publish_signature(self.pusher, f"{self.host}/{REPO}", REPO, digest, key, mode=self.mode, **options)


@pytest.fixture(params=["oci-1.1-referrers", "docker-registry-sig-tag", "docker-registry-referrers-tag"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if request.param == "oci-1.1-referrers":
        registry = OciRegistry()
        base_url = registry.start()
        yield Setup(base_url, HttpPusher(base_url), "referrers", registry)
        registry.stop()
        return
    base_url = request.getfixturevalue("docker_registry")
    pusher = SkopeoPusher(base_url, tmp_path, fallback=HttpPusher(base_url))  # a real client pushes
    yield Setup(base_url, pusher, "tag" if request.param.endswith("sig-tag") else "referrers-tag")


def test_an_image_signed_by_the_release_key_is_trusted(setup: Setup) -> None:
    digest = setup.image()
    setup.sign(digest)
    verdict = setup.verifier().verify(digest)
    assert verdict.trusted, verdict.reason
    assert (verdict.release_version, verdict.release_year) == (VERSION, 2027)
    assert verdict.source == ("referrers" if setup.mode == "referrers" else "tag-schema")


def test_an_unsigned_image_is_untrusted(setup: Setup) -> None:
    verdict = setup.verifier().verify(setup.image())
    assert not verdict.trusted and "no signature" in verdict.reason


def test_an_image_signed_by_an_unknown_key_is_untrusted(setup: Setup) -> None:
    digest = setup.image()
    setup.sign(digest, STRANGER)
    assert not setup.verifier().verify(digest).trusted


def test_a_trusted_payload_naming_another_digest_is_untrusted(setup: Setup) -> None:
    digest, other = setup.image(), setup.image()
    payload = simple_signing_payload(f"{setup.host}/{REPO}", other, VERSION)
    setup.sign(digest, payload=payload, signature=RELEASE_KEY.sign(payload))
    verdict = setup.verifier().verify(digest)
    assert not verdict.trusted and "another image digest" in verdict.reason


def test_two_trusted_signatures_with_different_versions_are_ambiguous(setup: Setup) -> None:
    digest = setup.image()
    setup.sign(digest)
    setup.sign(digest, SECOND_RELEASE_KEY, version="2.5.0 (2027.09)")
    verdict = setup.verifier(keys=(RELEASE_KEY, SECOND_RELEASE_KEY)).verify(digest)
    assert not verdict.trusted and "different release versions" in verdict.reason


def test_a_signature_by_an_untrusted_key_beside_a_trusted_one_is_ignored(setup: Setup) -> None:
    digest = setup.image()
    setup.sign(digest)
    setup.sign(digest, STRANGER, version="9.9.9 (2099.01)")
    verdict = setup.verifier().verify(digest)
    assert verdict.trusted and verdict.release_year == 2027


def test_a_registry_outside_the_allow_list_is_never_contacted(setup: Setup) -> None:
    digest = setup.image()
    setup.sign(digest)
    verifier = setup.verifier()
    with pytest.raises(InvalidRequest):
        verifier.verify(digest, "registry.evil.example/stellaops/scanner")
    client = RegistryClient(allow_list=["registry.example"], insecure_loopback=True)
    with pytest.raises(ReleaseUnverifiable, match="not allow-listed"):
        client.collect(f"{setup.host}/{REPO}", digest)
    assert client.calls == 0


# --- faults: the in-test registry injects them ------------------------------------------------


@pytest.fixture
def oci(tmp_path: Path) -> Iterator[Setup]:
    registry = OciRegistry()
    base_url = registry.start()
    yield Setup(base_url, HttpPusher(base_url), "referrers", registry)
    registry.stop()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda payload: payload[:-1] + b"!", "does not match its digest"),  # same size, other bytes
        (lambda payload: payload + b" ", "larger than allowed"),  # more bytes than the descriptor says
    ],
)
def test_a_tampered_signature_blob_is_unverifiable(oci: Setup, tamper: Any, message: str) -> None:
    digest = oci.image()
    oci.sign(digest)
    payload = simple_signing_payload(f"{oci.host}/{REPO}", digest, VERSION)
    assert oci.registry is not None
    oci.registry.tampered_blobs["sha256:" + hashlib.sha256(payload).hexdigest()] = tamper(payload)
    with pytest.raises(ReleaseUnverifiable, match=message):
        oci.verifier().verify(digest)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_registry_answering_5xx_is_unverifiable(oci: Setup, status: int) -> None:
    digest = oci.image()
    oci.sign(digest)
    assert oci.registry is not None
    oci.registry.fail_status = status
    with pytest.raises(ReleaseUnverifiable, match=str(status)):
        oci.verifier().verify(digest)


def test_a_registry_that_does_not_answer_in_time_is_unverifiable(oci: Setup) -> None:
    digest = oci.image()
    oci.sign(digest)
    assert oci.registry is not None
    oci.registry.delay_seconds = 2.0
    with pytest.raises(ReleaseUnverifiable, match="unreachable"):
        oci.verifier(timeout=(0.5, 0.5)).verify(digest)


def test_a_malformed_referrers_answer_is_unverifiable(oci: Setup) -> None:
    digest = oci.image()
    oci.sign(digest)
    assert oci.registry is not None
    oci.registry.malformed_referrers = True
    with pytest.raises(ReleaseUnverifiable, match="malformed"):
        oci.verifier().verify(digest)


def test_an_unreachable_registry_is_unverifiable() -> None:
    from local.stack import free_port

    host = f"127.0.0.1:{free_port()}"
    client = RegistryClient(allow_list=[host], insecure_loopback=True)
    with pytest.raises(ReleaseUnverifiable):
        client.collect(f"{host}/{REPO}", "sha256:" + "a" * 64)


def test_plain_http_is_refused_beyond_loopback_and_without_the_test_switch(oci: Setup) -> None:
    digest = oci.image()
    oci.sign(digest)
    with pytest.raises(ReleaseUnverifiable):  # https:// to a plain-HTTP registry fails
        RegistryClient(allow_list=[oci.host]).collect(f"{oci.host}/{REPO}", digest)


def test_referrers_pages_are_followed(oci_registry_factory: Callable[..., OciRegistry]) -> None:
    registry = oci_registry_factory(page_size=1)
    setup = Setup(registry.base_url, HttpPusher(registry.base_url), "referrers", registry)
    digest = setup.image()
    setup.sign(digest, STRANGER)  # sorted by digest: the trusted one may be on either page
    setup.sign(digest)
    verifier = setup.verifier()
    assert verifier.verify(digest).trusted
    assert sum(1 for _, path in registry.requests if "/referrers/" in path) == 2


def test_a_token_auth_registry_is_read_with_an_anonymous_token(
    oci_registry_factory: Callable[..., OciRegistry],
) -> None:
    registry = oci_registry_factory(auth="token")
    setup = Setup(registry.base_url, HttpPusher(registry.base_url), "referrers", registry)
    digest = setup.image()
    setup.sign(digest)
    assert setup.verifier().verify(digest).trusted
    assert any(path == "/token" for _, path in registry.requests)


def test_referrers_404_falls_back_to_the_tag_schema(oci_registry_factory: Callable[..., OciRegistry]) -> None:
    registry = oci_registry_factory(referrers_api=False)
    setup = Setup(registry.base_url, HttpPusher(registry.base_url), "referrers-tag", registry)
    digest = setup.image()
    setup.sign(digest)
    verdict = setup.verifier().verify(digest)
    assert verdict.trusted and verdict.source == "tag-schema"


# --- the cache ------------------------------------------------------------------------------


def test_a_trusted_verdict_is_cached_and_costs_no_registry_call(oci: Setup) -> None:
    digest = oci.image()
    oci.sign(digest)
    verifier = oci.verifier()
    assert oci.registry is not None
    first = verifier.verify(digest)
    calls = len(oci.registry.requests)
    second = verifier.verify(digest)
    assert first.trusted and not first.cached and second.trusted and second.cached
    assert len(oci.registry.requests) == calls


def test_a_change_of_trusted_keys_never_reuses_a_verdict(oci: Setup) -> None:
    digest = oci.image()
    oci.sign(digest)
    cache_shared = InMemoryCache(FixedClock(1_800_000_000))
    trusting = oci.verifier()
    trusting._cache = cache_shared  # the shared (DynamoDB) layer, as two deployments would see it
    assert trusting.verify(digest).trusted
    rotated = oci.verifier(keys=(SECOND_RELEASE_KEY,))
    rotated._cache = cache_shared
    assert not rotated.verify(digest).trusted


def test_an_untrusted_verdict_expires_within_a_minute(oci: Setup) -> None:
    digest = oci.image()
    verifier = oci.verifier()
    assert not verifier.verify(digest).trusted
    oci.sign(digest)
    assert not verifier.verify(digest).trusted  # still the cached answer
    verifier._clock.advance(61)  # type: ignore[attr-defined]
    assert verifier.verify(digest).trusted


def test_signature_layers_without_the_annotation_are_not_signatures(oci: Setup) -> None:
    digest = oci.image()
    oci.sign(digest, key=None)
    assert not oci.verifier().verify(digest).trusted  # the payload is there, the signature is not
