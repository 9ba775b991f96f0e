"""The Stella Ops scanner "release" the local stack and the tests trust: a small OCI image
whose bytes are fixed (so its digest is known to the events and the client), signed with
cosign's simple-signing format by a release key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

REPOSITORY = "stellaops/scanner"
VERSION = "2.4.1 (2027.06)"
_CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": "scanner"}},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(b"stellaops scanner").hexdigest()],
        },
    },
    separators=(",", ":"),
    sort_keys=True,
).encode()
_LAYER = b"stellaops scanner 2.4.1 (2027.06): a stand-in layer"


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


IMAGE_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", _CONFIG),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", _LAYER)],
    },
    separators=(",", ":"),
).encode()
#: The digest every event file and the client name as ``scannerImageDigest``.
SCANNER_DIGEST = "sha256:" + hashlib.sha256(IMAGE_MANIFEST).hexdigest()


def publish_image(pusher: Any, repository: str = REPOSITORY) -> str:
    """Push the fixed scanner image; returns its digest (always SCANNER_DIGEST)."""
    pusher.push_blob(repository, _CONFIG)
    pusher.push_blob(repository, _LAYER)
    pusher.push_manifest(repository, "2.4.1", IMAGE_MANIFEST, "application/vnd.oci.image.manifest.v1+json")
    return SCANNER_DIGEST
