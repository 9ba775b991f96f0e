"""What a hostile or broken registry can make the release check do (spec §5.3, decision 0011),
proved over real HTTP against the in-test OCI registry with faults injected: redirects, pagination
``Link``, the per-verification byte and request budgets, malformed answers of every shape, and the
``RegistryCaBundle`` trust store. Every refusal is ``ReleaseUnverifiable``.

Nothing leaves loopback: a redirect to a made-up HTTPS host is resolved by an injected resolver,
and the session answers that host in process (``StorageDouble``); a listener on 127.0.0.2 stands
for "somewhere else" and counts the connections it is offered."""

from __future__ import annotations

import io
import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from local.pki import DevPki
from local.registry import OCI_INDEX, OCI_MANIFEST, OciRegistry
from local.release import (
    COSIGN_SIG_ARTIFACT,
    OCI_CONFIG,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING,
    HttpPusher,
    ReleaseKey,
    compact_json,
    descriptor,
    publish_scanner_image,
    publish_signature,
    sha256_digest,
    simple_signing_payload,
)
from local.tls import server_context
from stellaops_signer.adapters.cache import InMemoryCache
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.registry import (
    MAX_BLOB_BYTES,
    MAX_LAYERS,
    MAX_SIGNATURE_MANIFESTS,
    MAX_VERIFICATION_BYTES,
    MAX_VERIFICATION_REQUESTS,
    RegistryClient,
    is_public_address,
)
from stellaops_signer.domain.errors import ConfigurationError, ReleaseUnverifiable
from stellaops_signer.domain.release import parse_trusted_keys
from stellaops_signer.usecases.verify_release import ReleaseVerifier
from stellaops_signer.wiring import registry_ca_file

REPO = "stellaops/scanner"
VERSION = "2.4.1 (2027.06)"
RELEASE_KEY = ReleaseKey.generate()
CDN = "cdn.release-storage.test"  # RFC 6761: never a real host
TIMEOUT = (1.0, 2.0)


# --- scenery -----------------------------------------------------------------------------------


@dataclass
class Signed:
    """A registry holding a scanner image with one trusted OCI 1.1 signature."""

    registry: OciRegistry
    digest: str
    payload: bytes

    @property
    def host(self) -> str:
        return urlsplit(self.registry.base_url).netloc

    @property
    def repository(self) -> str:
        return f"{self.host}/{REPO}"

    @property
    def payload_digest(self) -> str:
        return sha256_digest(self.payload)

    def path(self, route: str, reference: str) -> str:
        return f"/v2/{REPO}/{route}/{reference}"

    def client(self, **options: Any) -> RegistryClient:
        options.setdefault("insecure_loopback", self.registry.base_url.startswith("http://"))
        return RegistryClient(allow_list=[self.host], timeout=TIMEOUT, **options)

    def verifier(self, client: RegistryClient) -> ReleaseVerifier:
        clock = FixedClock(1_800_000_000)
        return ReleaseVerifier(
            registry=client,
            keys=parse_trusted_keys(RELEASE_KEY.public_pem),
            scanner_repositories=[self.repository],
            allow_list=[self.host],
            cache=InMemoryCache(clock),
            clock=clock,
        )

    def gets(self, path: str) -> int:
        return self.registry.requests.count(("GET", path))

    def serve(
        self,
        path: str,
        body: Any,
        status: int = 200,
        *,
        content_type: str = "application/json",
        **headers: str,
    ) -> None:
        """Answer ``path`` with ``body`` (JSON-encoded unless bytes) from now on."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.registry.overrides[path] = (status, {"Content-Type": content_type, **headers}, data)

    def serve_signature_manifest(self, manifest: bytes) -> None:
        """A referrers listing naming exactly ``manifest`` (by its true digest), and ``manifest``."""
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [_referrer(manifest)]}
        self.serve(self.path("referrers", self.digest), index, content_type=OCI_INDEX)
        self.serve(self.path("manifests", sha256_digest(manifest)), manifest)


def _referrer(manifest: bytes) -> dict[str, Any]:
    return {**descriptor(OCI_MANIFEST, manifest), "artifactType": COSIGN_SIG_ARTIFACT}


def sign_release(registry: OciRegistry, ca: str | None = None) -> Signed:
    """Publish a scanner image and its trusted signature (over HTTPS trusting ``ca``), then forget
    the requests that took."""
    pusher = HttpPusher(registry.base_url)
    if ca is not None:
        pusher.session.verify = ca
    host = urlsplit(registry.base_url).netloc
    digest = publish_scanner_image(pusher, REPO)
    publish_signature(pusher, f"{host}/{REPO}", REPO, digest, RELEASE_KEY, version=VERSION, mode="referrers")
    registry.requests.clear()
    registry.request_headers.clear()
    return Signed(registry, digest, simple_signing_payload(f"{host}/{REPO}", digest, VERSION))


@pytest.fixture
def signed(oci_registry: OciRegistry) -> Signed:
    return sign_release(oci_registry)


@pytest.fixture
def signed_with_token(oci_registry_factory: Callable[..., OciRegistry]) -> Signed:
    """The same release on a registry that demands its anonymous Bearer token."""
    return sign_release(oci_registry_factory(auth="token"))


@pytest.fixture
def signed_over_tls(pki: DevPki) -> Iterator[Signed]:
    """The release on a registry served over HTTPS, its certificate issued by the dev CA (which no
    public root knows)."""
    identity = pki.issue("oci-registry", server=True)
    registry = OciRegistry()
    registry.start(tls=server_context(pki, identity, require_client_cert=False))
    yield sign_release(registry, ca=str(pki.ca.cert))
    registry.stop()


class Bystander:
    """A TCP listener on 127.0.0.2 ("another host") that counts the connections it is offered."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.2", 0))
        self._socket.settimeout(0.05)
        self.port = int(self._socket.getsockname()[1])
        self.netloc = f"127.0.0.2:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="Bystander", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture
def bystander() -> Iterator[Bystander]:
    listener = Bystander()
    yield listener
    listener.stop()


class StorageDouble(requests.adapters.BaseAdapter):
    """Blob storage at ``https://cdn.release-storage.test``, answered in process (a session adapter):
    what the client sends there is recorded, and nothing leaves this machine."""

    def __init__(self, blobs: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.blobs = blobs or {}
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        body = self.blobs.get(urlsplit(request.url or "").path)
        response = requests.Response()
        response.status_code = 404 if body is None else 200
        response.headers = CaseInsensitiveDict({"Content-Length": str(len(body or b""))})
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(body or b""), preload_content=False)
        response.url, response.request = request.url or "", request
        return response

    def close(self) -> None:
        pass


def cdn_session(storage: StorageDouble) -> requests.Session:
    session = requests.Session()
    session.mount(f"https://{CDN}/", storage)
    return session


def resolving_cdn_to(*addresses: str) -> tuple[Callable[[str, int], list[str]], list[tuple[str, int]]]:
    """A resolver that answers ``addresses`` for the CDN host (and nothing else), and what it was asked."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        if host != CDN:
            raise OSError(f"{host} is not in this test's DNS")
        return list(addresses)

    return resolve, asked


def store_signature_manifest(registry: OciRegistry, subject: str, payloads: list[bytes]) -> bytes:
    """Store (in process) an OCI 1.1 signature manifest of ``subject`` with one simple-signing layer
    per payload, each annotated with a signature nobody checks before the budget does."""
    layers = []
    for payload in payloads:
        registry.put_blob(REPO, payload, sha256_digest(payload))
        layers.append(descriptor(SIMPLESIGNING, payload, {SIGNATURE_ANNOTATION: "MEUCIQ=="}))
    config = compact_json({"rootfs": {"type": "layers", "diff_ids": []}})
    registry.put_blob(REPO, config, sha256_digest(config))
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": COSIGN_SIG_ARTIFACT,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
            "subject": descriptor(OCI_MANIFEST, registry.manifest(REPO, subject).data),
        }
    )
    registry.put_manifest(REPO, sha256_digest(manifest), manifest, OCI_MANIFEST)
    return manifest


def blob_gets(registry: OciRegistry) -> int:
    return sum(1 for method, path in registry.requests if method == "GET" and "/blobs/" in path)


def manifest_gets(registry: OciRegistry) -> int:
    return sum(1 for method, path in registry.requests if method == "GET" and "/manifests/" in path)


def headers_of(registry: OciRegistry, path: str) -> list[dict[str, str]]:
    return [
        {name.lower(): value for name, value in headers.items()}
        for (_, seen), headers in zip(registry.requests, registry.request_headers, strict=True)
        if seen == path
    ]


# --- 1. redirects --------------------------------------------------------------------------------


def test_a_blob_redirect_to_plain_http_elsewhere_is_refused_and_never_contacted(
    signed: Signed, bystander: Bystander
) -> None:
    blob = signed.path("blobs", signed.payload_digest)
    signed.serve(blob, b"", 307, Location=f"http://{bystander.netloc}/storage/{signed.payload_digest}")
    with pytest.raises(ReleaseUnverifiable, match="other than an HTTPS host"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets(blob) == 1
    assert bystander.connections == 0


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.0.0.7"],
        ["169.254.169.254"],
        ["fd00:ec2::254"],
        ["::ffff:127.0.0.1"],
        ["64:ff9b::a00:7"],  # NAT64 of 10.0.0.7
        ["1.1.1.1", "10.0.0.7"],  # every address counts, not the first
    ],
    ids=["loopback", "private", "metadata", "ipv6-ula", "ipv4-mapped", "nat64-private", "one-of-two"],
)
def test_a_blob_redirect_to_a_host_resolving_to_a_non_public_address_is_refused(
    signed: Signed, addresses: list[str]
) -> None:
    storage = StorageDouble({f"/blobs/{signed.payload_digest}": signed.payload})
    resolve, asked = resolving_cdn_to(*addresses)
    blob = signed.path("blobs", signed.payload_digest)
    signed.serve(blob, b"", 307, Location=f"https://{CDN}/blobs/{signed.payload_digest}")
    client = signed.client(session=cdn_session(storage), resolve=resolve)
    with pytest.raises(ReleaseUnverifiable, match="loopback, private or metadata"):
        signed.verifier(client).verify(signed.digest)
    assert asked == [(CDN, 443)]
    assert storage.sent == []


def test_a_blob_redirect_to_a_public_https_host_is_followed_without_credentials(
    signed_with_token: Signed,
) -> None:
    signed = signed_with_token
    storage = StorageDouble({f"/blobs/{signed.payload_digest}": signed.payload})
    resolve, _ = resolving_cdn_to("1.1.1.1", "2606:4700::1111")
    blob = signed.path("blobs", signed.payload_digest)
    signed.serve(blob, b"", 307, Location=f"https://{CDN}/blobs/{signed.payload_digest}")
    client = signed.client(session=cdn_session(storage), resolve=resolve)
    assert signed.verifier(client).verify(signed.digest).trusted
    assert headers_of(signed.registry, blob)[-1]["authorization"].startswith("Bearer ")
    [fetched] = storage.sent
    assert fetched.url == f"https://{CDN}/blobs/{signed.payload_digest}"
    assert "Authorization" not in fetched.headers


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_is_public_address_accepts_public_addresses_in_any_form(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the instance metadata service
        "100.64.0.1",  # shared address space
        "0.0.0.0",  # connects to this host on Linux
        "240.0.0.1",
        "255.255.255.255",
        "224.0.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1%eth0",
        "fd00:ec2::254",  # the metadata service over IPv6
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64: mapped as the site decides
        "2002:a9fe:a9fe::1",  # 6to4 169.254.169.254
        "::7f00:1",  # IPv4-compatible 127.0.0.1
    ],
)
def test_is_public_address_refuses_loopback_private_link_local_and_their_ipv6_forms(address: str) -> None:
    assert not is_public_address(address)


def test_a_blob_redirect_to_the_same_registry_is_followed_without_credentials(
    signed_with_token: Signed,
) -> None:
    signed = signed_with_token
    blob, storage = signed.path("blobs", signed.payload_digest), f"/storage/{signed.payload_digest}"
    signed.serve(blob, b"", 307, Location=storage)
    signed.serve(storage, signed.payload, content_type="application/octet-stream")
    assert signed.verifier(signed.client()).verify(signed.digest).trusted
    [asked] = headers_of(signed.registry, blob)
    [redirected] = headers_of(signed.registry, storage)
    assert asked["authorization"].startswith("Bearer ")
    assert "authorization" not in redirected


@pytest.mark.parametrize(("hops", "followed"), [(3, True), (4, False)])
def test_more_than_three_redirects_are_refused(signed: Signed, hops: int, followed: bool) -> None:
    chain = [signed.path("blobs", signed.payload_digest)] + [f"/storage/{n}" for n in range(1, hops + 1)]
    for here, there in itertools.pairwise(chain):
        signed.serve(here, b"", 307, Location=there)
    signed.serve(chain[-1], signed.payload, content_type="application/octet-stream")
    verifier = signed.verifier(signed.client())
    if followed:
        assert verifier.verify(signed.digest).trusted
    else:
        with pytest.raises(ReleaseUnverifiable, match="redirects too often"):
            verifier.verify(signed.digest)
    assert signed.gets(chain[-1]) == (1 if followed else 0)


def test_a_redirect_of_a_referrers_listing_is_never_followed(signed: Signed) -> None:
    signed.serve(signed.path("referrers", signed.digest), b"", 307, Location="/storage/referrers")
    with pytest.raises(ReleaseUnverifiable, match="redirects"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets("/storage/referrers") == 0


# --- 2. pagination -------------------------------------------------------------------------------


def _listing_linking_to(signed: Signed, link: str) -> str:
    referrers = signed.path("referrers", signed.digest)
    page = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    signed.serve(referrers, page, Link=f'<{link}>; rel="next"', content_type=OCI_INDEX)
    return referrers


@pytest.mark.parametrize("elsewhere", ["bystander", "another-name", "another-port"])
def test_a_referrers_link_to_another_host_is_refused_and_the_token_stays_home(
    signed_with_token: Signed, bystander: Bystander, elsewhere: str
) -> None:
    signed = signed_with_token
    port = urlsplit(signed.registry.base_url).port
    netloc = {
        "bystander": bystander.netloc,
        "another-name": f"localhost:{port}",  # the same server under a name nobody allow-listed
        "another-port": f"127.0.0.1:{bystander.port}",
    }[elsewhere]
    referrers = _listing_linking_to(signed, f"http://{netloc}{signed.path('referrers', signed.digest)}?n=1")
    with pytest.raises(ReleaseUnverifiable, match="another scheme or host"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert [h.get("authorization", "")[:7] for h in headers_of(signed.registry, referrers)] == ["", "Bearer "]
    assert {h.get("Host") for h in signed.registry.request_headers} == {signed.host}
    assert bystander.connections == 0


def test_a_referrers_link_from_http_to_https_is_refused(signed_with_token: Signed) -> None:
    signed = signed_with_token
    referrers = _listing_linking_to(signed, f"https://{signed.host}{signed.path('referrers', signed.digest)}")
    with pytest.raises(ReleaseUnverifiable, match="another scheme or host"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets(referrers) == 2  # the challenge, then the page with the token


def test_a_referrers_link_from_https_to_http_is_refused(signed_over_tls: Signed, pki: DevPki) -> None:
    signed = signed_over_tls
    referrers = _listing_linking_to(signed, f"http://{signed.host}{signed.path('referrers', signed.digest)}")
    client = signed.client(ca_bundle=registry_ca_file(pki.ca.cert.read_text()))
    with pytest.raises(ReleaseUnverifiable, match="another scheme or host"):
        signed.verifier(client).verify(signed.digest)
    assert signed.gets(referrers) == 1


# --- 3. budgets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("listing", ["referrers", "tag-schema"])
def test_signature_blobs_beyond_the_byte_budget_are_refused_and_reading_stops(
    oci_registry_factory: Callable[..., OciRegistry], listing: str
) -> None:
    registry = oci_registry_factory(referrers_api=listing == "referrers")
    subject = publish_scanner_image(HttpPusher(registry.base_url), REPO)
    manifests = [  # 4 x 16 distinct 64 KiB payloads: 4 MiB listed, twice the budget
        store_signature_manifest(registry, subject, [secrets.token_bytes(MAX_BLOB_BYTES) for _ in range(16)])
        for _ in range(4)
    ]
    if listing == "tag-schema":
        index = compact_json(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [_referrer(m) for m in manifests]}
        )
        registry.put_manifest(REPO, subject.replace(":", "-"), index, OCI_INDEX)
    registry.requests.clear()
    client = RegistryClient(
        allow_list=[urlsplit(registry.base_url).netloc], insecure_loopback=True, timeout=TIMEOUT
    )
    with pytest.raises(ReleaseUnverifiable, match="more than one verification may read"):
        client.collect(f"{urlsplit(registry.base_url).netloc}/{REPO}", subject)
    assert blob_gets(registry) <= MAX_VERIFICATION_BYTES // MAX_BLOB_BYTES
    assert manifest_gets(registry) <= 3


def test_referrers_pages_beyond_the_byte_budget_are_refused(signed: Signed) -> None:
    referrers = signed.path("referrers", signed.digest)
    padded = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "annotations": {"pad": "x" * 900_000},
    }
    signed.serve(referrers, padded, Link=f'<{referrers}?last=x>; rel="next"', content_type=OCI_INDEX)
    with pytest.raises(ReleaseUnverifiable, match="more than one verification may read"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets(referrers) == 3  # 2 x 900 KB fit in 2 MiB, the third page does not


def test_a_sig_manifest_listing_more_layers_than_allowed_is_read_up_to_the_limit(
    oci_registry_factory: Callable[..., OciRegistry],
) -> None:
    """One ``.sig`` manifest cannot exceed the byte budget (16 layers of at most 64 KiB): the
    layers beyond ``MAX_LAYERS`` are never fetched."""
    registry = oci_registry_factory(referrers_api=False)
    subject = publish_scanner_image(HttpPusher(registry.base_url), REPO)
    payloads = [secrets.token_bytes(MAX_BLOB_BYTES) for _ in range(40)]  # 2.5 MiB listed
    for payload in payloads:
        registry.put_blob(REPO, payload, sha256_digest(payload))
    layers = [descriptor(SIMPLESIGNING, p, {SIGNATURE_ANNOTATION: "MEUCIQ=="}) for p in payloads]
    config = compact_json({})
    registry.put_blob(REPO, config, sha256_digest(config))
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
        }
    )
    registry.put_manifest(REPO, subject.replace(":", "-") + ".sig", manifest, OCI_MANIFEST)
    registry.requests.clear()
    host = urlsplit(registry.base_url).netloc
    candidates = RegistryClient(allow_list=[host], insecure_loopback=True, timeout=TIMEOUT).collect(
        f"{host}/{REPO}", subject
    )
    assert len(candidates) == blob_gets(registry) == MAX_LAYERS


def test_a_blob_listed_many_times_is_fetched_once(signed: Signed) -> None:
    layer = descriptor(
        SIMPLESIGNING, signed.payload, {SIGNATURE_ANNOTATION: RELEASE_KEY.sign(signed.payload)}
    )
    registry = signed.registry
    config = compact_json({})
    registry.put_blob(REPO, config, sha256_digest(config))
    for copies in (16, 3, 1):  # three more signature manifests, listing the same payload 20 times
        manifest = compact_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": COSIGN_SIG_ARTIFACT,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [layer] * copies,
                "subject": descriptor(OCI_MANIFEST, registry.manifest(REPO, signed.digest).data),
            }
        )
        registry.put_manifest(REPO, sha256_digest(manifest), manifest, OCI_MANIFEST)
    registry.requests.clear()
    client = signed.client()
    candidates = client.collect(signed.repository, signed.digest)
    assert len(candidates) == 21 and {c.payload for c in candidates} == {signed.payload}
    assert signed.gets(signed.path("blobs", signed.payload_digest)) == 1
    assert signed.verifier(signed.client()).verify(signed.digest).trusted


def test_the_request_budget_bounds_a_listing_of_many_signature_manifests(signed: Signed) -> None:
    for _ in range(20):  # 1 listing + 16 x (1 manifest + 4 blobs) = 81 requests wanted
        store_signature_manifest(signed.registry, signed.digest, [secrets.token_bytes(64) for _ in range(4)])
    signed.registry.requests.clear()
    client = signed.client()
    with pytest.raises(ReleaseUnverifiable, match="more requests than one verification may make"):
        client.collect(signed.repository, signed.digest)
    assert len(signed.registry.requests) == client.calls == MAX_VERIFICATION_REQUESTS


def test_at_most_sixteen_signature_manifests_of_a_listing_are_read(signed: Signed) -> None:
    for _ in range(40):
        store_signature_manifest(signed.registry, signed.digest, [secrets.token_bytes(64)])
    signed.registry.requests.clear()
    signed.client().collect(signed.repository, signed.digest)
    assert manifest_gets(signed.registry) == MAX_SIGNATURE_MANIFESTS


# --- 4. malformed answers ------------------------------------------------------------------------

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "listing",
    [
        {"manifests": [{"mediaType": OCI_MANIFEST, "artifactType": COSIGN_SIG_ARTIFACT, "size": 10}]},
        {"manifests": [{"artifactType": COSIGN_SIG_ARTIFACT, "digest": SHA + "/../../../token"}]},
        {"manifests": [{"artifactType": COSIGN_SIG_ARTIFACT, "digest": SHA.upper()}]},
        {"manifests": {"digest": SHA, "artifactType": COSIGN_SIG_ARTIFACT}},
        {"manifests": [SHA]},
        {"manifests": None},
        [{"digest": SHA}],
        "manifests",
        b'{"schemaVersion": 2, "manifests": [',
        b"<html><body>503 Service Unavailable</body></html>",
        b"[" * 100_000,
        b'{"manifests": "\xff\xfe"}',
    ],
    ids=[
        "descriptor-without-digest",
        "digest-with-a-path",
        "digest-in-upper-case",
        "manifests-an-object",
        "manifests-strings",
        "manifests-null",
        "a-json-list",
        "a-json-string",
        "truncated",
        "html",
        "deeply-nested",
        "not-utf8",
    ],
)
def test_a_malformed_referrers_listing_is_unverifiable(signed: Signed, listing: Any) -> None:
    referrers = signed.path("referrers", signed.digest)
    signed.serve(referrers, listing)
    with pytest.raises(ReleaseUnverifiable, match=r"malformed|sha256 digest"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets(referrers) == 1
    assert manifest_gets(signed.registry) == 0


def _signature_manifest(layers: Any) -> bytes:
    return compact_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers})


_PAYLOAD_LAYER = {"mediaType": SIMPLESIGNING, "digest": SHA, "size": 10}


@pytest.mark.parametrize(
    "manifest",
    [
        _signature_manifest({"mediaType": SIMPLESIGNING, "digest": SHA, "size": 10}),
        _signature_manifest([SHA, SHA]),
        _signature_manifest([{**_PAYLOAD_LAYER, "annotations": [SIGNATURE_ANNOTATION, "MEUC"]}]),
        _signature_manifest([{**_PAYLOAD_LAYER, "annotations": "MEUC"}]),
        _signature_manifest(
            [{**_PAYLOAD_LAYER, "size": "10", "annotations": {SIGNATURE_ANNOTATION: "MEUC"}}]
        ),
        _signature_manifest(
            [{**_PAYLOAD_LAYER, "size": True, "annotations": {SIGNATURE_ANNOTATION: "MEUC"}}]
        ),
        _signature_manifest([{**_PAYLOAD_LAYER, "size": -1, "annotations": {SIGNATURE_ANNOTATION: "MEUC"}}]),
        _signature_manifest([{**_PAYLOAD_LAYER, "digest": 7, "annotations": {SIGNATURE_ANNOTATION: "MEUC"}}]),
        b"[]",
        b'{"schemaVersion": 2, "layers": [{"mediaType": "',
        b"null",
    ],
    ids=[
        "layers-an-object",
        "layers-strings",
        "annotations-a-list",
        "annotations-a-string",
        "size-a-string",
        "size-a-boolean",
        "size-negative",
        "digest-a-number",
        "a-json-list",
        "truncated",
        "null",
    ],
)
def test_a_malformed_signature_manifest_is_unverifiable(signed: Signed, manifest: bytes) -> None:
    signed.serve_signature_manifest(manifest)
    with pytest.raises(ReleaseUnverifiable, match=r"malformed|sha256 digest"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets(signed.path("manifests", sha256_digest(manifest))) == 1
    assert blob_gets(signed.registry) == 0


@pytest.mark.parametrize(
    "answer",
    [
        {"token": "abc", "expires_in": "soon"},
        {"token": "abc", "expires_in": -5},
        {"token": "abc", "expires_in": True},
        b'{"token": "abc", "expires_in": NaN}',
        b'{"token": "abc", "expires_in": 1e400}',
        b'{"token": "abc", "expires_in": 1' + b"0" * 400 + b"}",
        {"expires_in": 300},
        {"token": "", "access_token": ""},
        {"token": 42},
        {"token": "two words"},
        b"token=abc&expires_in=300",
        b'{"token": "ab',
        [{"token": "abc"}],
    ],
    ids=[
        "expires-in-soon",
        "expires-in-negative",
        "expires-in-a-boolean",
        "expires-in-nan",
        "expires-in-infinite",
        "expires-in-too-large-for-a-float",
        "no-token",
        "empty-tokens",
        "token-a-number",
        "token-with-a-space",
        "not-json",
        "truncated",
        "a-json-list",
    ],
)
def test_a_malformed_token_answer_is_unverifiable(signed_with_token: Signed, answer: Any) -> None:
    signed = signed_with_token
    signed.serve("/token", answer)
    with pytest.raises(ReleaseUnverifiable, match=r"token|malformed"):
        signed.verifier(signed.client()).verify(signed.digest)
    assert signed.gets("/token") == 1
    assert manifest_gets(signed.registry) == 0


# --- 5. RegistryCaBundle -------------------------------------------------------------------------


def test_a_registry_under_a_private_ca_is_refused_without_registry_ca_bundle_whatever_the_environment(
    signed_over_tls: Signed, pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = signed_over_tls
    for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):  # all name the dev CA
        monkeypatch.setenv(variable, str(pki.ca.cert))
    with pytest.raises(ReleaseUnverifiable, match="unreachable") as refused:
        signed.verifier(signed.client()).verify(signed.digest)
    assert isinstance(refused.value.__cause__, requests.exceptions.SSLError)
    assert signed.registry.requests == []  # no request got past the TLS handshake


def test_a_registry_under_a_private_ca_is_trusted_with_registry_ca_bundle(
    signed_over_tls: Signed, pki: DevPki
) -> None:
    signed = signed_over_tls
    client = signed.client(ca_bundle=registry_ca_file(pki.ca.cert.read_text()))
    verdict = signed.verifier(client).verify(signed.digest)
    assert verdict.trusted and verdict.source == "referrers"
    assert signed.gets(signed.path("blobs", signed.payload_digest)) == 1


def _not_a_ca_bundle(pki: DevPki, kind: str) -> str:
    leaf = pki.issue("oci-registry", server=True)
    return {
        "a-server-certificate": leaf.cert.read_text(),
        "a-ca-and-a-leaf": pki.ca.cert.read_text() + leaf.cert.read_text(),
        "a-private-key": leaf.key.read_text(),
        "not-pem": "MIIBszCCAVmgAwIBAgIU",
        "empty": "",
        "not-ascii": "-----BEGIN CERTIFICATE-----\nMIIé\n-----END CERTIFICATE-----\n",
    }[kind]


@pytest.mark.parametrize(
    "kind", ["a-server-certificate", "a-ca-and-a-leaf", "a-private-key", "not-pem", "empty", "not-ascii"]
)
def test_registry_ca_file_refuses_what_is_not_ca_certificates_in_pem(pki: DevPki, kind: str) -> None:
    with pytest.raises(ConfigurationError, match="SIGNER_REGISTRY_CA_BUNDLE"):
        registry_ca_file(_not_a_ca_bundle(pki, kind))


# --- time ---------------------------------------------------------------------------------------


def test_a_registry_that_trickles_its_answer_is_cut_off_at_the_verification_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GIVEN a registry sending a byte every 0.2 s (each read is within the socket timeout) WHEN one
    verification may take 1 s THEN it is refused after about that, not after the whole answer."""
    from stellaops_signer.adapters import registry as registry_module

    monkeypatch.setattr(registry_module, "MAX_VERIFICATION_SECONDS", 1.0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    host = f"127.0.0.1:{listener.getsockname()[1]}"
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
            )
            while not stop.wait(0.2):
                try:
                    connection.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    client = RegistryClient(allow_list=[host], insecure_loopback=True)
    started = time.monotonic()
    try:
        with pytest.raises(ReleaseUnverifiable, match="too slow"):
            client.collect(f"{host}/{REPO}", "sha256:" + "a" * 64)
        assert time.monotonic() - started < 3.0
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
