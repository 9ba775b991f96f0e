"""Publishing signed scanner releases the way cosign does, for the tests and the local stack.

A release is a tiny OCI image plus cosign "simple signing" signatures (spec §5.3): a
signature manifest whose layer ``application/vnd.dev.cosign.simplesigning.v1+json`` is the
signed payload, with the base64 DER ECDSA signature in the layer annotation
``dev.cosignproject.cosign/signature``. Three ways to attach it to the image:

- ``tag``: cosign's tag schema, ``sha256-<hex>.sig``; a second signature is appended as a
  second layer of the same manifest, as cosign does.
- ``referrers``: an OCI 1.1 referrer (``subject`` + ``artifactType``) pushed by digest; a
  registry with the Referrers API indexes it.
- ``referrers-tag``: the same referrer, plus the OCI 1.1 tag-schema fallback index under
  ``sha256-<hex>`` for registries without the Referrers API (distribution 2.8).

Bad releases for the test matrix (unknown key, another digest, wrong type, conflicting
versions, no signature) are made with the ``key``/``payload``/``signature`` parameters.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import tarfile
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_TYPE = "cosign container image signature"
VERSION_KEY = "org.opencontainers.image.version"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

SignatureMode = Literal["tag", "referrers", "referrers-tag"]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI descriptor in go-containerregistry's key order (mediaType, size, digest)."""
    result: dict[str, Any] = {"mediaType": media_type, "size": len(data), "digest": sha256_digest(data)}
    if annotations:
        result["annotations"] = annotations
    return result


def docker_reference(base_url: str, repository: str) -> str:
    """``http://127.0.0.1:5000`` + ``stellaops/scanner`` → ``127.0.0.1:5000/stellaops/scanner``."""
    return f"{urlsplit(base_url).netloc}/{repository}"


class ReleaseKey:
    """The release signing key: ECDSA P-256, as ``cosign generate-key-pair`` makes."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("a release key is ECDSA P-256")
        self._private_key = private_key
        der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_pem = (
            private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        self.keyid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")

    @classmethod
    def generate(cls) -> ReleaseKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: Path) -> ReleaseKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> ReleaseKey:
        """The key at ``path``, generated and saved there (0600) on first use."""
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key

    def save(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM, readable by the owner only."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        path.chmod(0o600)

    def sign(self, payload: bytes) -> str:
        """cosign's annotation value: base64 (standard, padded) of DER ECDSA over SHA-256(payload)."""
        der = self._private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode("ascii")


def simple_signing_payload(
    repository_ref: str,
    digest: str,
    version: str | None,
    *,
    type_: str = COSIGN_TYPE,
    extra_optional: dict[str, Any] | None = None,
) -> bytes:
    """cosign's simple-signing payload, serialised compactly as cosign does.

    ``optional`` is ``null`` when empty, like cosign's output without annotations.
    """
    optional: dict[str, Any] = dict(extra_optional or {})
    if version is not None:
        optional[VERSION_KEY] = version
    document = {
        "critical": {
            "identity": {"docker-reference": repository_ref},
            "image": {"docker-manifest-digest": digest},
            "type": type_,
        },
        "optional": dict(sorted(optional.items())) or None,
    }
    return compact_json(document)


class Pusher(Protocol):
    """Writes to (and reads manifests back from) a registry over the distribution API."""

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload a blob; returns its digest."""
        ...

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """Upload these exact manifest bytes under a tag or their digest; returns the digest."""
        ...

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        """The manifest bytes a tag or digest names, or None when the registry has none."""
        ...


class PushError(RuntimeError):
    """The registry refused or failed a push."""


class HttpPusher:
    """A minimal distribution-API client: monolithic blob uploads, manifests, Bearer challenges."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # this machine sets REQUESTS_CA_BUNDLE and proxies
        self._tokens: dict[str, str] = {}  # repository → anonymous pull+push Bearer token

    def _request(self, method: str, url: str, repository: str, **kwargs: Any) -> requests.Response:
        """One request, with the repository's token once there is one; on a Bearer challenge,
        fetch a pull+push token for the repository (a pusher will push) and retry once."""
        url = urljoin(self.base_url + "/", url)
        headers = dict(kwargs.pop("headers", {}))
        if repository in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[repository]}"
        response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return response
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": params.get("service", ""), "scope": f"repository:{repository}:pull,push"}
        answer = self.session.get(params["realm"], params=query, timeout=self.timeout)
        answer.raise_for_status()
        body = answer.json()
        self._tokens[repository] = body.get("token") or body["access_token"]
        headers["Authorization"] = f"Bearer {self._tokens[repository]}"
        return self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)

    @staticmethod
    def _expect(response: requests.Response, status: int, what: str) -> None:
        if response.status_code != status:
            raise PushError(f"{what}: HTTP {response.status_code} {response.text[:300]}")

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self._request("HEAD", f"/v2/{repository}/blobs/{digest}", repository).status_code == 200:
            return digest
        started = self._request("POST", f"/v2/{repository}/blobs/uploads/", repository)
        self._expect(started, 202, f"start upload to {repository}")
        # The Location may be relative or absolute and may carry a query (distribution's _state).
        finished = self._request(
            "PUT",
            started.headers["Location"],
            repository,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._expect(finished, 201, f"upload blob {digest} to {repository}")
        return digest

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        digest = sha256_digest(data)
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            data=data,
            headers={"Content-Type": media_type},
        )
        self._expect(response, 201, f"push manifest {repository}:{reference}")
        answered = response.headers.get("Docker-Content-Digest", digest)
        if answered != digest:
            raise PushError(f"registry stored {answered}, the bytes pushed are {digest}")
        return digest

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        response = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", repository, headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        self._expect(response, 200, f"get manifest {repository}:{reference}")
        if reference.startswith("sha256:") and sha256_digest(response.content) != reference:
            raise PushError(f"manifest {reference} came back with other bytes")
        return response.content


def _tar_gz(name: str, content: bytes) -> tuple[bytes, bytes]:
    """A reproducible one-file tar and its gzip: (uncompressed tar, compressed layer)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue(), gzip.compress(buffer.getvalue(), mtime=0)


def publish_scanner_image(
    pusher: Pusher, repository: str, *, label: str = "scanner 2.4.1", tag: str | None = None
) -> str:
    """Push a tiny valid OCI image (random content, so a new digest each time); returns its digest.

    It is tagged ``tag``, else the label made tag-safe (``scanner 2.4.1`` → ``scanner-2.4.1``).
    """
    tar, layer = _tar_gz("opt/stellaops/scanner.bin", secrets.token_bytes(32))
    config = compact_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.title": label}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        }
    )
    pusher.push_blob(repository, config)
    pusher.push_blob(repository, layer)
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER_GZIP, layer)],
        }
    )
    reference = tag or re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "latest"
    return pusher.push_manifest(repository, reference, manifest, OCI_MANIFEST)


def _signature_config(layers: list[dict[str, Any]]) -> bytes:
    """The config cosign writes for a signature image: one empty history entry per layer."""
    epoch = "0001-01-01T00:00:00Z"
    return compact_json(
        {
            "architecture": "",
            "created": epoch,
            "history": [{"created": epoch} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            "config": {},
        }
    )


def publish_signature(
    pusher: Pusher,
    registry_repo: str,
    repository: str,
    image_digest: str,
    key: ReleaseKey | None,
    *,
    version: str | None,
    mode: SignatureMode,
    payload: bytes | None = None,
    signature: str | None = None,
) -> str:
    """Attach one cosign signature to ``image_digest``; returns the signature manifest's digest.

    ``registry_repo`` is the identity in the payload (``<registry>/<repository>``). The payload
    defaults to the simple-signing payload for the image and version; ``signature`` overrides
    ``key.sign(payload)``; with neither a key nor a signature the layer carries no signature.
    """
    if payload is None:
        payload = simple_signing_payload(registry_repo, image_digest, version)
    if signature is None and key is not None:
        signature = key.sign(payload)
    pusher.push_blob(repository, payload)
    layer = descriptor(SIMPLESIGNING, payload, {SIGNATURE_ANNOTATION: signature} if signature else None)
    tag = image_digest.replace(":", "-")

    if mode == "tag":
        existing = pusher.get_manifest(repository, f"{tag}.sig")
        layers = (json.loads(existing)["layers"] if existing else []) + [layer]
        return _push_signature_manifest(pusher, repository, f"{tag}.sig", layers, extra={})

    subject_bytes = pusher.get_manifest(repository, image_digest)
    if subject_bytes is None:
        raise PushError(f"{repository}@{image_digest} does not exist")
    subject_type = json.loads(subject_bytes).get("mediaType", OCI_MANIFEST)
    extra = {"artifactType": COSIGN_SIG_ARTIFACT, "subject": descriptor(subject_type, subject_bytes)}
    manifest_digest = _push_signature_manifest(pusher, repository, None, [layer], extra=extra)
    if mode == "referrers-tag":
        _append_to_fallback_index(pusher, repository, tag, manifest_digest)
    return manifest_digest


def _push_signature_manifest(
    pusher: Pusher, repository: str, tag: str | None, layers: list[dict[str, Any]], *, extra: dict[str, Any]
) -> str:
    config = _signature_config(layers)
    pusher.push_blob(repository, config)
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            **({"artifactType": extra["artifactType"]} if "artifactType" in extra else {}),
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
            **({"subject": extra["subject"]} if "subject" in extra else {}),
        }
    )
    return pusher.push_manifest(repository, tag or sha256_digest(manifest), manifest, OCI_MANIFEST)


def _append_to_fallback_index(pusher: Pusher, repository: str, tag: str, referrer_digest: str) -> None:
    """OCI 1.1 "Referrers Tag Schema": read the ``sha256-<hex>`` index, append, push it back."""
    referrer = pusher.get_manifest(repository, referrer_digest)
    assert referrer is not None
    document = json.loads(referrer)
    entry = descriptor(document["mediaType"], referrer)
    entry["artifactType"] = document.get("artifactType") or document["config"]["mediaType"]
    if document.get("annotations"):
        entry["annotations"] = document["annotations"]
    existing = pusher.get_manifest(repository, tag)
    manifests = json.loads(existing)["manifests"] if existing else []
    if all(item["digest"] != entry["digest"] for item in manifests):
        manifests.append(entry)
    index = compact_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    pusher.push_manifest(repository, tag, index, OCI_INDEX)


def publish_signed_release(
    pusher: Pusher,
    registry_repo: str,
    repository: str,
    key: ReleaseKey,
    *,
    version: str = "2.4.1 (2027.06)",
    mode: SignatureMode = "referrers",
) -> tuple[str, str]:
    """A scanner image and its trusted signature: (image digest, signature manifest digest)."""
    image_digest = publish_scanner_image(pusher, repository, label=f"scanner {version.split()[0]}")
    signature_digest = publish_signature(
        pusher, registry_repo, repository, image_digest, key, version=version, mode=mode
    )
    return image_digest, signature_digest
