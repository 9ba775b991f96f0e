"""Pushing with a real, independent client: skopeo, from an OCI image layout to a registry.

The release tests must read what a real client wrote (spec §8), not only what our own
``HttpPusher`` wrote. ``SkopeoPusher`` has the ``Pusher`` shape of ``local.release``: blobs
are staged in an OCI image layout directory; each manifest is written into the layout's
``index.json`` and copied with ``skopeo copy --preserve-digests`` (``--all`` for an index),
so skopeo refuses rather than rewrites the bytes. Manifests are read back with
``skopeo inspect --raw``.

Measured with Debian bookworm's skopeo 1.9.3 against docker-registry 2.8: image manifests
(layer annotations, ``artifactType``, ``subject`` included) and indexes without
``artifactType`` keep their exact bytes. An index whose descriptors carry ``artifactType``
(the OCI 1.1 referrers fallback index) cannot be copied with ``--preserve-digests``: its
containers/image clones index entries without ``artifactType`` and then refuses ("Manifest
list must be converted to type ... but we cannot modify it"); without the flag it would
push the index re-serialised with ``artifactType`` dropped, under another digest. Such an
index goes through the ``fallback`` pusher when one is given, and is recorded in
``fallback_pushes``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from local.release import Pusher

INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
LAYOUT_REF = "push"


class SkopeoError(RuntimeError):
    """skopeo failed; the message carries its stderr."""


def skopeo_binary() -> str:
    """The skopeo on PATH, or a message saying how to install it (``.ci/registry.sh``)."""
    found = shutil.which("skopeo")
    if found is None:
        raise SkopeoError("skopeo is not installed: run `bash .ci/registry.sh` (as root)")
    return found


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_blob(layout: Path, data: bytes) -> str:
    """Store ``data`` under ``blobs/sha256/<hex>`` of the layout; returns its digest."""
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return digest


def write_layout(layout: Path, manifest: bytes, media_type: str, ref_name: str = LAYOUT_REF) -> str:
    """Make ``layout`` an OCI image layout whose ``index.json`` names ``manifest`` as ``ref_name``.

    The blobs the manifest references must already be in the layout (``write_blob``), or in
    the destination registry, where skopeo finds and reuses them.
    """
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    digest = write_blob(layout, manifest)
    entry = {
        "mediaType": media_type,
        "digest": digest,
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref_name},
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    (layout / "index.json").write_text(json.dumps(index))
    return digest


def _run(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [skopeo_binary(), "--insecure-policy", *arguments], capture_output=True, timeout=timeout, check=False
    )


def skopeo_copy(layout: Path, destination: str, *, all_images: bool, timeout: float = 120.0) -> None:
    """``skopeo copy --preserve-digests oci:<layout>:push docker://<destination>`` over plain HTTP."""
    arguments = ["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]
    if all_images:
        arguments.append("--all")
    result = _run([*arguments, f"oci:{layout}:{LAYOUT_REF}", f"docker://{destination}"], timeout)
    if result.returncode != 0:
        raise SkopeoError(f"skopeo copy to {destination} failed: {result.stderr.decode(errors='replace')}")


class SkopeoPusher:
    """The ``Pusher`` of ``local.release`` backed by skopeo and an OCI layout under ``workdir``."""

    def __init__(
        self, base_url: str, workdir: Path, *, fallback: Pusher | None = None, timeout: float = 120.0
    ) -> None:
        self.host = urlsplit(base_url).netloc
        self.layout = workdir / "oci-layout"
        self.fallback = fallback
        self.fallback_pushes: list[str] = []  # digests skopeo could not push byte for byte
        self.timeout = timeout
        skopeo_binary()

    def push_blob(self, repository: str, data: bytes) -> str:
        """Only staged: skopeo uploads it with the first manifest that references it."""
        return write_blob(self.layout, data)

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        digest = _digest(data)
        if reference.startswith("sha256:") and reference != digest:
            raise SkopeoError(f"pushing {digest} by the digest {reference}")
        is_index = media_type in INDEX_TYPES
        if is_index:
            for child in json.loads(data).get("manifests", []):
                self._stage_child(repository, child["digest"])
        write_layout(self.layout, data, media_type)
        try:
            skopeo_copy(
                self.layout, self._image(repository, reference), all_images=is_index, timeout=self.timeout
            )
        except SkopeoError as error:
            if not (is_index and "we cannot modify it" in str(error) and self.fallback is not None):
                raise
            self.fallback.push_manifest(repository, reference, data, media_type)
            self.fallback_pushes.append(digest)
        return digest

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        result = self._inspect(repository, reference)
        if result.returncode != 0:
            return None  # manifest unknown
        if reference.startswith("sha256:") and _digest(result.stdout) != reference:
            raise SkopeoError(f"{repository}@{reference} came back with other bytes")
        return result.stdout

    def _image(self, repository: str, reference: str) -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"{self.host}/{repository}{separator}{reference}"

    def _blob_path(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    def _inspect(self, repository: str, reference: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
        image = f"docker://{self._image(repository, reference)}"
        result = _run(["inspect", "--raw", *flags, "--tls-verify=false", image], self.timeout)
        if result.returncode != 0 and b"manifest unknown" not in result.stderr:
            raise SkopeoError(f"skopeo inspect {image} failed: {result.stderr.decode(errors='replace')}")
        return result

    def _stage_child(self, repository: str, digest: str) -> None:
        """``skopeo copy --all`` reads each child manifest and its config from the layout (layers
        it reuses from the destination), so stage what another client pushed."""
        if not self._blob_path(digest).exists():
            child = self.get_manifest(repository, digest)
            if child is None:
                raise SkopeoError(f"{repository}@{digest} is neither staged nor pushed")
            write_blob(self.layout, child)
        config = json.loads(self._blob_path(digest).read_bytes()).get("config")
        if config and not self._blob_path(config["digest"]).exists():
            fetched = self._inspect(repository, digest, "--config").stdout
            if _digest(fetched) != config["digest"]:
                raise SkopeoError(f"the config of {repository}@{digest} came back with other bytes")
            write_blob(self.layout, fetched)
