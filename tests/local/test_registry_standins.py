"""Contract tests of the release stand-ins: the in-test OCI registry, the cosign-style
publisher, and skopeo pushes to Debian's docker-registry (spec §8, §10)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from local.registry import OCI_INDEX, OCI_MANIFEST, OciRegistry
from local.release import (
    COSIGN_SIG_ARTIFACT,
    MANIFEST_ACCEPT,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING,
    HttpPusher,
    Pusher,
    ReleaseKey,
    compact_json,
    descriptor,
    docker_reference,
    publish_scanner_image,
    publish_signature,
    simple_signing_payload,
)
from local.skopeo import SkopeoError, SkopeoPusher

pytest_plugins = ["tests.registry_fixtures"]

REPO = "stellaops/scanner"
V1 = "2.4.1 (2027.06)"
V2 = "2.4.2 (2027.09)"
SBOM_TYPE = "application/spdx+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def get_manifest(base_url: str, reference: str, repository: str = REPO) -> requests.Response:
    return http().get(
        f"{base_url}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
    )


class RecordingPusher:
    """Remembers the exact manifest bytes pushed, to compare with what the registry serves."""

    def __init__(self, inner: Pusher) -> None:
        self.inner = inner
        self.manifests: dict[str, bytes] = {}

    def push_blob(self, repository: str, data: bytes) -> str:
        return self.inner.push_blob(repository, data)

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        digest = self.inner.push_manifest(repository, reference, data, media_type)
        self.manifests[digest] = data
        return digest

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        return self.inner.get_manifest(repository, reference)


def sign(registry_url: str, pusher: Pusher, image: str, key: ReleaseKey, version: str, mode: Any) -> str:
    return publish_signature(
        pusher, docker_reference(registry_url, REPO), REPO, image, key, version=version, mode=mode
    )


def push_sbom_referrer(pusher: Pusher, image: str) -> str:
    """A non-signature referrer (artifactType from the manifest, with annotations)."""
    subject = pusher.get_manifest(REPO, image)
    assert subject is not None
    config, layer = b"{}", b'{"spdxVersion":"SPDX-2.3"}'
    pusher.push_blob(REPO, config)
    pusher.push_blob(REPO, layer)
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": descriptor("application/vnd.oci.empty.v1+json", config),
            "layers": [descriptor(SBOM_TYPE, layer)],
            "subject": descriptor(OCI_MANIFEST, subject),
            "annotations": {"org.opencontainers.image.created": "2027-06-01T00:00:00Z"},
        }
    )
    return pusher.push_manifest(REPO, sha256(manifest), manifest, OCI_MANIFEST)


@pytest.fixture(scope="module")
def release_key() -> ReleaseKey:
    return ReleaseKey.generate()


# -- the in-test registry: distribution spec v1.1 --------------------------------------------------


def test_manifest_round_trip_by_tag_and_digest_keeps_the_exact_bytes(oci_registry: OciRegistry) -> None:
    pusher = RecordingPusher(HttpPusher(oci_registry.base_url))
    image = publish_scanner_image(pusher, REPO, label="scanner 2.4.1")

    by_tag, by_digest = (
        get_manifest(oci_registry.base_url, "scanner-2.4.1"),
        get_manifest(oci_registry.base_url, image),
    )
    assert by_tag.content == by_digest.content == pusher.manifests[image]
    assert sha256(by_digest.content) == image == by_digest.headers["Docker-Content-Digest"]
    assert by_digest.headers["Content-Type"] == OCI_MANIFEST
    head = http().head(f"{oci_registry.base_url}/v2/{REPO}/manifests/{image}")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == len(by_digest.content)
    for layer in [json.loads(by_digest.content)["config"], *json.loads(by_digest.content)["layers"]]:
        blob = http().get(f"{oci_registry.base_url}/v2/{REPO}/blobs/{layer['digest']}")
        assert blob.status_code == 200 and sha256(blob.content) == layer["digest"]


def test_unknown_manifest_answers_manifest_unknown(oci_registry: OciRegistry) -> None:
    response = get_manifest(oci_registry.base_url, "nope")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_push_by_digest_must_match_the_bytes(oci_registry: OciRegistry) -> None:
    manifest = compact_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    response = http().put(
        f"{oci_registry.base_url}/v2/{REPO}/manifests/{sha256(b'other')}",
        data=manifest,
        headers={"Content-Type": OCI_INDEX},
    )
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_manifest_naming_a_missing_blob_is_refused(oci_registry: OciRegistry) -> None:
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", b"{}"),
            "layers": [],
        }
    )
    response = http().put(
        f"{oci_registry.base_url}/v2/{REPO}/manifests/v1",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


def test_blob_uploads_verify_the_digest(oci_registry: OciRegistry) -> None:
    base, session = oci_registry.base_url, http()
    started = session.post(f"{base}/v2/{REPO}/blobs/uploads/")
    assert started.status_code == 202
    wrong = session.put(base + started.headers["Location"], params={"digest": sha256(b"x")}, data=b"y")
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"

    single = session.post(f"{base}/v2/{REPO}/blobs/uploads/", params={"digest": sha256(b"y")}, data=b"y")
    assert single.status_code == 201 and single.headers["Docker-Content-Digest"] == sha256(b"y")
    assert session.get(f"{base}/v2/{REPO}/blobs/{sha256(b'y')}").content == b"y"


def test_tags_list_names_the_pushed_tags(oci_registry: OciRegistry, release_key: ReleaseKey) -> None:
    pusher = HttpPusher(oci_registry.base_url)
    image = publish_scanner_image(pusher, REPO, label="scanner 2.4.1")
    sign(oci_registry.base_url, pusher, image, release_key, V1, "tag")
    tags = http().get(f"{oci_registry.base_url}/v2/{REPO}/tags/list").json()
    assert tags == {"name": REPO, "tags": sorted(["scanner-2.4.1", image.replace(":", "-") + ".sig"])}


def test_referrers_lists_descriptors_of_the_manifests_naming_the_subject(
    oci_registry: OciRegistry, release_key: ReleaseKey
) -> None:
    pusher = RecordingPusher(HttpPusher(oci_registry.base_url))
    image = publish_scanner_image(pusher, REPO)
    other = publish_scanner_image(pusher, REPO, tag="other")
    signatures = {sign(oci_registry.base_url, pusher, image, release_key, v, "referrers") for v in (V1, V2)}
    sbom = push_sbom_referrer(pusher, image)
    sign(oci_registry.base_url, pusher, other, release_key, V1, "referrers")

    response = http().get(f"{oci_registry.base_url}/v2/{REPO}/referrers/{image}")

    assert response.status_code == 200 and response.headers["Content-Type"] == OCI_INDEX
    index = response.json()
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    by_digest = {item["digest"]: item for item in index["manifests"]}
    assert set(by_digest) == signatures | {sbom}
    for digest in signatures:
        assert by_digest[digest] == {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(pusher.manifests[digest]),
            "artifactType": COSIGN_SIG_ARTIFACT,
        }
    assert by_digest[sbom]["artifactType"] == SBOM_TYPE
    assert by_digest[sbom]["annotations"] == {"org.opencontainers.image.created": "2027-06-01T00:00:00Z"}


def test_a_manifest_with_a_subject_is_answered_with_oci_subject(oci_registry: OciRegistry) -> None:
    pusher = HttpPusher(oci_registry.base_url)
    image = publish_scanner_image(pusher, REPO)
    subject = descriptor(OCI_MANIFEST, pusher.get_manifest(REPO, image) or b"")
    manifest = compact_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": subject})
    response = http().put(
        f"{oci_registry.base_url}/v2/{REPO}/manifests/{sha256(manifest)}",
        data=manifest,
        headers={"Content-Type": OCI_INDEX},
    )
    assert response.status_code == 201 and response.headers["OCI-Subject"] == image


def test_referrers_artifact_type_filter_is_applied_and_announced(
    oci_registry: OciRegistry, release_key: ReleaseKey
) -> None:
    pusher = HttpPusher(oci_registry.base_url)
    image = publish_scanner_image(pusher, REPO)
    signature = sign(oci_registry.base_url, pusher, image, release_key, V1, "referrers")
    push_sbom_referrer(pusher, image)

    response = http().get(
        f"{oci_registry.base_url}/v2/{REPO}/referrers/{image}", params={"artifactType": COSIGN_SIG_ARTIFACT}
    )

    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert [item["digest"] for item in response.json()["manifests"]] == [signature]
    unfiltered = http().get(f"{oci_registry.base_url}/v2/{REPO}/referrers/{image}")
    assert "OCI-Filters-Applied" not in unfiltered.headers


def test_referrers_pagination_is_followed_through_link_headers(
    oci_registry_factory: Callable[..., OciRegistry], release_key: ReleaseKey
) -> None:
    registry = oci_registry_factory(page_size=2)
    pusher = HttpPusher(registry.base_url)
    image = publish_scanner_image(pusher, REPO)
    expected = {
        sign(registry.base_url, pusher, image, release_key, f"2.4.{n} (2027.06)", "referrers")
        for n in range(5)
    }

    seen: list[str] = []
    url: str | None = f"/v2/{REPO}/referrers/{image}"
    pages = 0
    while url:
        response = http().get(registry.base_url + url)
        page = response.json()["manifests"]
        assert len(page) <= 2
        seen += [item["digest"] for item in page]
        pages += 1
        link = response.links.get("next")
        url = link["url"] if link else None
        if url:
            assert url.startswith(f"/v2/{REPO}/referrers/{image}?n=2&last=sha256")
    assert pages == 3 and len(seen) == 5 and set(seen) == expected


def test_referrers_of_an_unknown_subject_is_an_empty_index(oci_registry: OciRegistry) -> None:
    response = http().get(f"{oci_registry.base_url}/v2/{REPO}/referrers/{sha256(b'nothing')}")
    assert response.status_code == 200 and response.json()["manifests"] == []


def test_without_the_referrers_api_the_route_is_404_like_distribution_2_8(
    oci_registry_factory: Callable[..., OciRegistry], release_key: ReleaseKey
) -> None:
    registry = oci_registry_factory(referrers_api=False)
    pusher = HttpPusher(registry.base_url)
    image = publish_scanner_image(pusher, REPO)
    sign(registry.base_url, pusher, image, release_key, V1, "referrers-tag")

    assert http().get(f"{registry.base_url}/v2/{REPO}/referrers/{image}").status_code == 404
    fallback = get_manifest(registry.base_url, image.replace(":", "-"))
    assert fallback.status_code == 200 and fallback.headers["Content-Type"] == OCI_INDEX


def test_token_auth_challenges_then_accepts_a_bearer_token_for_the_repository(
    oci_registry_factory: Callable[..., OciRegistry],
) -> None:
    registry = oci_registry_factory(auth="token")
    base, session = registry.base_url, http()
    image = publish_scanner_image(HttpPusher(base), REPO)  # the pusher follows the challenge itself

    assert session.get(f"{base}/v2/").headers["WWW-Authenticate"] == (
        f'Bearer realm="{base}/token",service="oci-test"'
    )
    challenged = get_manifest(base, image)
    assert challenged.status_code == 401
    assert challenged.headers["WWW-Authenticate"] == (
        f'Bearer realm="{base}/token",service="oci-test",scope="repository:{REPO}:pull"'
    )
    token = session.get(
        f"{base}/token", params={"service": "oci-test", "scope": f"repository:{REPO}:pull"}
    ).json()
    assert token["token"] == token["access_token"]
    bearer = {"Authorization": f"Bearer {token['token']}", "Accept": MANIFEST_ACCEPT}
    assert session.get(f"{base}/v2/{REPO}/manifests/{image}", headers=bearer).status_code == 200

    other = session.get(f"{base}/v2/other/repo/manifests/{image}", headers=bearer)
    assert other.status_code == 401 and 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    assert session.get(f"{base}/token", params={"service": "elsewhere"}).status_code == 400


def test_injected_status_tampered_bytes_malformed_referrers_and_request_log(
    oci_registry: OciRegistry, release_key: ReleaseKey
) -> None:
    pusher = HttpPusher(oci_registry.base_url)
    image = publish_scanner_image(pusher, REPO)
    signature = sign(oci_registry.base_url, pusher, image, release_key, V1, "referrers")
    layer = json.loads(pusher.get_manifest(REPO, signature) or b"")["layers"][0]["digest"]

    oci_registry.requests.clear()
    oci_registry.tampered_blobs[layer] = b'{"critical":{}}'
    served = http().get(f"{oci_registry.base_url}/v2/{REPO}/blobs/{layer}")
    assert served.content == b'{"critical":{}}' and served.headers["Docker-Content-Digest"] == layer

    oci_registry.malformed_referrers = True
    with pytest.raises(ValueError):
        http().get(f"{oci_registry.base_url}/v2/{REPO}/referrers/{image}").json()

    oci_registry.fail_status = 503
    assert get_manifest(oci_registry.base_url, image).status_code == 503
    assert http().get(f"{oci_registry.base_url}/v2/").status_code == 503
    assert oci_registry.requests == [
        ("GET", f"/v2/{REPO}/blobs/{layer}"),
        ("GET", f"/v2/{REPO}/referrers/{image}"),
        ("GET", f"/v2/{REPO}/manifests/{image}"),
        ("GET", "/v2/"),
    ]


def test_a_delayed_registry_times_clients_out_and_still_stops_promptly(
    oci_registry_factory: Callable[..., OciRegistry],
) -> None:
    registry = oci_registry_factory()
    registry.delay_seconds = 30
    with pytest.raises(requests.ReadTimeout):
        http().get(f"{registry.base_url}/v2/", timeout=0.3)
    started = time.monotonic()
    registry.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(requests.ConnectionError):
        http().get(f"{registry.base_url}/v2/", timeout=1)


# -- the cosign-style publisher --------------------------------------------------------------------


def test_release_key_signature_verifies_with_plain_cryptography(tmp_path: Path) -> None:
    key = ReleaseKey.load_or_create(tmp_path / "release.key")
    assert (tmp_path / "release.key").stat().st_mode & 0o777 == 0o600
    assert ReleaseKey.load_or_create(tmp_path / "release.key").public_pem == key.public_pem
    payload = simple_signing_payload("127.0.0.1:5000/stellaops/scanner", sha256(b"image"), V1)

    public_key = serialization.load_pem_public_key(key.public_pem.encode())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(base64.b64decode(key.sign(payload)), payload, ec.ECDSA(hashes.SHA256()))

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.keyid == base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def test_simple_signing_payload_is_cosigns_compact_json() -> None:
    digest = sha256(b"image")
    payload = simple_signing_payload("127.0.0.1:5000/stellaops/scanner", digest, V1)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/stellaops/scanner"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},'
        b'"optional":{"org.opencontainers.image.version":"2.4.1 (2027.06)"}}'
    )
    assert json.loads(simple_signing_payload("r/x", digest, None))["optional"] is None


def test_tag_mode_appends_each_signature_as_a_layer_of_one_sig_manifest(
    oci_registry: OciRegistry, release_key: ReleaseKey
) -> None:
    pusher = HttpPusher(oci_registry.base_url)
    image = publish_scanner_image(pusher, REPO)
    sign(oci_registry.base_url, pusher, image, release_key, V1, "tag")
    unsigned = publish_signature(
        pusher, docker_reference(oci_registry.base_url, REPO), REPO, image, None, version=V2, mode="tag"
    )

    manifest = json.loads(get_manifest(oci_registry.base_url, image.replace(":", "-") + ".sig").content)
    assert sha256(get_manifest(oci_registry.base_url, unsigned).content) == unsigned
    assert [layer["mediaType"] for layer in manifest["layers"]] == [SIMPLESIGNING, SIMPLESIGNING]
    assert SIGNATURE_ANNOTATION in manifest["layers"][0]["annotations"]
    assert "annotations" not in manifest["layers"][1]
    config = http().get(f"{oci_registry.base_url}/v2/{REPO}/blobs/{manifest['config']['digest']}").json()
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]


# -- Debian's docker-registry, pushed by skopeo and by HttpPusher ----------------------------------


def make_pusher(kind: str, base_url: str, workdir: Path) -> Pusher:
    if kind == "skopeo":
        return SkopeoPusher(base_url, workdir, fallback=HttpPusher(base_url))
    return HttpPusher(base_url)


@pytest.mark.parametrize("kind", ["skopeo", "http"])
def test_real_registry_serves_both_tag_schemas_byte_for_byte(
    kind: str, docker_registry: str, release_key: ReleaseKey, tmp_path: Path
) -> None:
    repository = f"stellaops/scanner-{kind}"
    inner = make_pusher(kind, docker_registry, tmp_path)
    pusher = RecordingPusher(inner)
    reference = docker_reference(docker_registry, repository)

    image = publish_scanner_image(pusher, repository)
    for version in (V1, V2):
        for mode in ("tag", "referrers-tag"):
            publish_signature(pusher, reference, repository, image, release_key, version=version, mode=mode)

    for digest, pushed in pusher.manifests.items():
        served = get_manifest(docker_registry, digest, repository)
        assert served.content == pushed and served.headers["Docker-Content-Digest"] == digest
    tag = image.replace(":", "-")
    signatures = json.loads(get_manifest(docker_registry, f"{tag}.sig", repository).content)
    assert len(signatures["layers"]) == 2
    for layer in signatures["layers"]:
        payload = http().get(f"{docker_registry}/v2/{repository}/blobs/{layer['digest']}").content
        signature = base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION])
        public_key = serialization.load_pem_public_key(release_key.public_pem.encode())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    fallback = json.loads(get_manifest(docker_registry, tag, repository).content)
    assert fallback["mediaType"] == OCI_INDEX and len(fallback["manifests"]) == 2
    assert {item["artifactType"] for item in fallback["manifests"]} == {COSIGN_SIG_ARTIFACT}
    for item in fallback["manifests"]:
        referrer = json.loads(get_manifest(docker_registry, item["digest"], repository).content)
        assert referrer["subject"]["digest"] == image
    assert http().get(f"{docker_registry}/v2/{repository}/referrers/{image}").status_code == 404
    if isinstance(inner, SkopeoPusher):  # only what skopeo 1.9 cannot keep (local/skopeo.py) bypasses it
        indexes = {d for d, data in pusher.manifests.items() if json.loads(data)["mediaType"] == OCI_INDEX}
        assert set(inner.fallback_pushes) <= indexes


def test_skopeo_appends_to_a_sig_manifest_another_client_started(
    docker_registry: str, release_key: ReleaseKey, tmp_path: Path
) -> None:
    repository = "stellaops/scanner-mixed"
    http_pusher = HttpPusher(docker_registry)
    image = publish_scanner_image(http_pusher, repository)
    reference = docker_reference(docker_registry, repository)
    publish_signature(http_pusher, reference, repository, image, release_key, version=V1, mode="tag")

    skopeo = SkopeoPusher(docker_registry, tmp_path)
    digest = publish_signature(skopeo, reference, repository, image, release_key, version=V2, mode="tag")

    served = get_manifest(docker_registry, image.replace(":", "-") + ".sig", repository)
    assert sha256(served.content) == digest and len(json.loads(served.content)["layers"]) == 2


def test_skopeo_either_keeps_an_index_byte_for_byte_or_refuses(
    docker_registry: str, release_key: ReleaseKey, tmp_path: Path
) -> None:
    repository = "stellaops/scanner-index"
    http_pusher = HttpPusher(docker_registry)
    image = publish_scanner_image(http_pusher, repository)
    referrer = publish_signature(
        http_pusher,
        docker_reference(docker_registry, repository),
        repository,
        image,
        release_key,
        version=V1,
        mode="referrers",
    )
    child = http_pusher.get_manifest(repository, referrer) or b""
    entry = {**descriptor(OCI_MANIFEST, child), "artifactType": COSIGN_SIG_ARTIFACT}
    index = compact_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})

    skopeo = SkopeoPusher(docker_registry, tmp_path)
    try:
        skopeo.push_manifest(repository, "fallback", index, OCI_INDEX)
    except SkopeoError as error:
        assert "we cannot modify it" in str(error)
        assert get_manifest(docker_registry, "fallback", repository).status_code == 404
    else:
        assert get_manifest(docker_registry, "fallback", repository).content == index
