"""Release integrity of the calling scanner (spec §5.3): cosign "simple signing" signatures
by a Stella Ops release key, evaluated fail-closed.

Pure: the registry client collects the candidate signatures (blobs already checked against
their descriptors); this module decides. Unknown keys are ignored; trusted signatures that
disagree — another digest, another version, another type — make the verdict ambiguous,
hence untrusted. There is no partial trust and no "warn".
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from stellaops_signer.domain.jose import JsonObject, sha256_b64url

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_TYPE = "cosign container image signature"
VERSION_KEY = "org.opencontainers.image.version"
#: "2.4.1 (2027.06)": a semantic version and the calendar tag (year.month) in parentheses.
_VERSION = re.compile(
    r"(?P<semver>\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?) \((?P<year>\d{4})\.(?P<month>\d{2})\)"
)
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    keyid: str
    key: ec.EllipticCurvePublicKey


def parse_trusted_keys(pem_text: str) -> tuple[TrustedKey, ...]:
    """Every P-256 public key in ``ReleaseTrustedKeys``; raises ValueError on anything else."""
    keys = []
    for block in _PEM_BLOCK.findall(pem_text):
        key = load_pem_public_key(block.encode("ascii"))
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("release keys must be ECDSA P-256 public keys")
        der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        keys.append(TrustedKey(sha256_b64url(der), key))
    if not keys:
        raise ValueError("no PEM public key found")
    return tuple(keys)


def trust_configuration_hash(keys: Iterable[TrustedKey], repositories: Iterable[str]) -> str:
    """Identifies what a verdict was decided against: a change of keys or repositories is a new hash."""
    material = json.dumps({"keys": sorted(k.keyid for k in keys), "repositories": sorted(repositories)})
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CandidateSignature:
    """A simple-signing layer found for the digest: its payload (digest-checked) and signature."""

    repository: str
    payload: bytes
    signature_b64: str
    source: str  # "referrers" or "tag-schema"


@dataclass(frozen=True, slots=True)
class ReleaseVerdict:
    digest: str
    trusted: bool
    reason: str = ""
    repository: str = ""
    release_signer: str = ""
    release_version: str = ""
    release_year: int = 0
    source: str = ""
    cached: bool = False
    signers: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> JsonObject:
        """The §3.3 answer."""
        body: JsonObject = {"digest": self.digest, "trusted": self.trusted}
        if self.trusted:
            body.update(
                repository=self.repository,
                releaseSigner=self.release_signer,
                releaseVersion=self.release_version,
                releaseYear=self.release_year,
                source=self.source,
            )
        else:
            body["reason"] = self.reason
        body["cached"] = self.cached
        return body

    def to_cache(self) -> JsonObject:
        return {k: getattr(self, k) for k in self.__slots__ if k != "cached"}

    @classmethod
    def from_cache(cls, data: JsonObject) -> ReleaseVerdict:
        data = dict(data)
        data["signers"] = tuple(data.get("signers", ()))
        return cls(**data, cached=True)


def _verifying_key(candidate: CandidateSignature, keys: Sequence[TrustedKey]) -> TrustedKey | None:
    try:
        signature = base64.b64decode(candidate.signature_b64, validate=True)
    except ValueError:
        return None
    for key in keys:
        try:
            key.key.verify(signature, candidate.payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return key
    return None


def evaluate(
    digest: str, candidates: Iterable[CandidateSignature], keys: Sequence[TrustedKey]
) -> ReleaseVerdict:
    """Decide whether ``digest`` is a genuine release (spec §5.3); never raises."""
    findings: list[tuple[TrustedKey, CandidateSignature, JsonObject]] = []
    for candidate in candidates:
        key = _verifying_key(candidate, keys)
        if key is None:
            continue  # signatures by unknown keys are ignored
        try:
            payload = json.loads(candidate.payload)
        except ValueError:
            return ReleaseVerdict(digest, False, "a trusted signature signs a payload that is not JSON")
        findings.append((key, candidate, payload if isinstance(payload, dict) else {}))
    if not findings:
        return ReleaseVerdict(digest, False, "no signature by a trusted release key")
    versions = set()
    for _, _, payload in findings:
        critical = payload.get("critical") or {}
        if not isinstance(critical, dict) or critical.get("type") != COSIGN_TYPE:
            return ReleaseVerdict(
                digest, False, "a trusted signature is not a cosign container image signature"
            )
        image = critical.get("image") or {}
        if not isinstance(image, dict) or image.get("docker-manifest-digest") != digest:
            return ReleaseVerdict(digest, False, "ambiguous: a trusted signature names another image digest")
        optional = payload.get("optional") or {}
        versions.add(optional.get(VERSION_KEY) if isinstance(optional, dict) else None)
    if len(versions) != 1:
        return ReleaseVerdict(digest, False, "ambiguous: trusted signatures name different release versions")
    version = next(iter(versions))
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None or not 1 <= int(match["month"]) <= 12:
        return ReleaseVerdict(digest, False, "the signed payload carries no calendar release version")
    key, candidate, _ = findings[0]
    return ReleaseVerdict(
        digest=digest,
        trusted=True,
        repository=candidate.repository,
        release_signer=key.keyid,
        release_version=str(version),
        release_year=int(match["year"]),
        source=candidate.source,
        signers=tuple(sorted({k.keyid for k, _, _ in findings})),
    )


__all__ = [
    "COSIGN_ARTIFACT_TYPE",
    "COSIGN_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "VERSION_KEY",
    "CandidateSignature",
    "ReleaseVerdict",
    "TrustedKey",
    "evaluate",
    "parse_trusted_keys",
    "trust_configuration_hash",
]
