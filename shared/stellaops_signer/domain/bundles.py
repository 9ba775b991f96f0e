"""The answers of a signing (spec §3.2, §5.5), built from what was signed: pure functions.

``bundle`` is the Signer's own: the envelope, the mode, who signed, the keyless chain and the
RFC 3161 timestamps. A Sigstore bundle v0.3 carries the same envelope with the verification
material sigstore's verifiers read: the leaf certificate (keyless) or the key's hint (KMS), and
the timestamps (the whole DER TimeStampResp in ``signedTimestamp``, as protobuf-specs define it).
No transparency-log entry: the Attestor logs the envelope to Rekor downstream.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from stellaops_signer.domain.dsse import Envelope
from stellaops_signer.domain.jcs import canonicalize
from stellaops_signer.domain.signing import SignedBy

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonObject

SIGSTORE_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signer_bundle(envelope: Envelope, signed: SignedBy, mode: str, timestamps: Sequence[bytes]) -> JsonObject:
    """The §3.2 ``bundle``."""
    bundle: JsonObject = {"dsse": envelope.to_json(), "mode": mode}
    if signed.certificate_chain:
        bundle["certificateChain"] = list(signed.certificate_chain)
    bundle["signingIdentity"] = dict(signed.identity)
    if timestamps:
        bundle["timestamps"] = [_b64(t) for t in timestamps]
    return bundle


def bundle_digest(bundle: JsonObject) -> str:
    """``bundleSha256``: the hex SHA-256 of the bundle's RFC 8785 form."""
    return hashlib.sha256(canonicalize(bundle)).hexdigest()


def sigstore_bundle(envelope: Envelope, signed: SignedBy, timestamps: Sequence[bytes]) -> JsonObject:
    """A Sigstore bundle v0.3 around the same envelope."""
    material: JsonObject
    if signed.certificate_chain:
        leaf = x509.load_pem_x509_certificate(signed.certificate_chain[0].encode("ascii"))
        material = {"certificate": {"rawBytes": _b64(leaf.public_bytes(Encoding.DER))}}
    else:
        material = {"publicKey": {"hint": signed.keyid}}
    material |= {
        "tlogEntries": [],
        "timestampVerificationData": {
            "rfc3161Timestamps": [{"signedTimestamp": _b64(t)} for t in timestamps]
        },
    }
    return {
        "mediaType": SIGSTORE_BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": envelope.to_json(),
    }


def answer_body(
    bundle: JsonObject,
    *,
    sigstore: JsonObject | None,
    policy: JsonObject,
    audit_id: str,
    bundle_sha256: str,
) -> JsonObject:
    """The §3.2 200 body."""
    body: JsonObject = {"bundle": bundle}
    if sigstore is not None:
        body["sigstoreBundle"] = sigstore
    body.update(policy=policy, auditId=audit_id, bundleSha256=bundle_sha256)
    return body


__all__ = ["SIGSTORE_BUNDLE_MEDIA_TYPE", "answer_body", "bundle_digest", "signer_bundle", "sigstore_bundle"]
