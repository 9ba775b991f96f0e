"""KMS as a KeySigner: sign SHA-256(message) with MessageType=DIGEST, verify locally."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.domain.errors import ConfigurationError, SigningUnavailable
from stellaops_signer.domain.jose import sha256_b64url
from stellaops_signer.domain.signing import PublishedKey, SignedBy
from stellaops_signer.ports import KeySigner

#: ECDSA over a SHA-256 digest (what KMS ``MessageType=DIGEST`` signs); one instance, reused.
_ECDSA_SHA256_DIGEST = ec.ECDSA(Prehashed(hashes.SHA256()))

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from mypy_boto3_kms.client import KMSClient

SIGNING_ALGORITHM: Final = "ECDSA_SHA_256"
KEY_SPEC: Final = "ECC_NIST_P256"


class KmsKeySigner:
    """One KMS key (ECC_NIST_P256, SIGN_VERIFY).

    The public key is fetched once per container (``GetPublicKey``); every signature KMS
    returns is verified with it before it leaves, so a wrong key spec or encoding cannot.
    """

    algorithm = SIGNING_ALGORITHM

    def __init__(self, client: KMSClient, key_id: str) -> None:
        self._client = client
        self._key_id = key_id
        self._lock = threading.Lock()
        self._public_key: ec.EllipticCurvePublicKey | None = None
        self._key_ref = key_id
        self._keyid = ""
        self._public_key_pem = ""
        self._created_at: datetime | None = None

    @property
    def key_ref(self) -> str:
        self._load()
        return self._key_ref

    @property
    def keyid(self) -> str:
        self._load()
        return self._keyid

    @property
    def public_key_pem(self) -> str:
        self._load()
        return self._public_key_pem

    def _load(self) -> ec.EllipticCurvePublicKey:
        with self._lock:
            if self._public_key is None:
                self._fetch()
            assert self._public_key is not None
            return self._public_key

    def _fetch(self) -> None:
        """``GetPublicKey`` (the alias's current target, when the key is named by an alias)."""
        try:
            answer = self._client.get_public_key(KeyId=self._key_id)
        except AWS_FAILURES as exc:
            raise SigningUnavailable(f"the signing key {self._key_id} cannot be read") from exc
        if answer.get("KeySpec") != KEY_SPEC or answer.get("KeyUsage") != "SIGN_VERIFY":
            raise ConfigurationError(f"KMS key {self._key_id} must be {KEY_SPEC} with SIGN_VERIFY")
        if SIGNING_ALGORITHM not in answer.get("SigningAlgorithms", []):
            raise ConfigurationError(f"KMS key {self._key_id} does not offer {SIGNING_ALGORITHM}")
        der = answer.get("PublicKey")
        try:
            public_key = serialization.load_der_public_key(der) if isinstance(der, bytes) else None
        except ValueError:
            public_key = None
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
            raise ConfigurationError(f"KMS key {self._key_id} is not a P-256 key")
        self._key_ref = str(answer.get("KeyId", self._key_id))
        self._keyid = sha256_b64url(der)
        self._public_key_pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        self._public_key = public_key

    def prepare(self) -> None:
        """Read the public key now (a cold start): a misconfigured key raises ConfigurationError, and
        an unreadable one too — at a cold start it is not a passing failure of one request."""
        try:
            self._load()
        except SigningUnavailable as exc:
            raise ConfigurationError(exc.detail) from None

    def created_at(self) -> datetime:
        """When KMS created the key (``DescribeKey``, once): the start of its validity window."""
        with self._lock:
            if self._created_at is None:
                try:
                    created = self._client.describe_key(KeyId=self._key_ref)["KeyMetadata"]["CreationDate"]
                except AWS_FAILURES as exc:
                    raise SigningUnavailable(f"the signing key {self._key_ref} cannot be described") from exc
                except (KeyError, TypeError):
                    raise SigningUnavailable(
                        f"KMS described {self._key_ref} without a creation date"
                    ) from None
                self._created_at = created if created.tzinfo else created.replace(tzinfo=UTC)
            return self._created_at

    def sign(self, message: bytes) -> bytes:
        """Sign with the key as configured (an alias signs with its current target). When KMS says
        another key signed — the alias was repointed, a rotation — its public key is read again:
        a warm container follows a rotation at once. Raises SigningUnavailable."""
        self._load()
        digest = hashlib.sha256(message).digest()
        try:
            answer = self._client.sign(
                KeyId=self._key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm=SIGNING_ALGORITHM
            )
        except AWS_FAILURES as exc:
            raise SigningUnavailable("KMS could not sign") from exc
        signature = answer.get("Signature") if isinstance(answer, dict) else None
        if not isinstance(signature, bytes):
            raise SigningUnavailable("KMS answered no signature")
        signed_by = answer.get("KeyId")
        if isinstance(signed_by, str) and signed_by != self._key_ref:
            with self._lock:
                try:
                    self._fetch()
                except ConfigurationError as exc:  # the alias now names a key that cannot sign for us
                    raise SigningUnavailable(str(exc)) from None
                self._created_at = None
        public_key = self._load()
        try:
            public_key.verify(signature, digest, _ECDSA_SHA256_DIGEST)
        except (InvalidSignature, ValueError):
            raise SigningUnavailable("KMS returned a signature that does not verify") from None
        return signature


class KmsEnvelopeSigner:
    """The ``EnvelopeSigner`` of KMS mode: one KMS key, named in the answer and the audit record."""

    mode = "kms"

    def __init__(self, key: KeySigner) -> None:
        self._key = key

    @property
    def keyid_hint(self) -> str:
        return self._key.keyid

    def sign(self, message: bytes) -> SignedBy:
        signature = self._key.sign(message)
        return SignedBy(
            keyid=self._key.keyid,
            signature=signature,
            identity={
                "keyId": self._key.key_ref,
                "algorithm": "ECDSA_P256_SHA256",
                "publicKeyPem": self._key.public_key_pem,
            },
            key_ref=self._key.key_ref,
        )


class ManagedKey(KeySigner, Protocol):
    """A KeySigner whose key the installation manages: read at the cold start, created at a time."""

    def prepare(self) -> None: ...

    def created_at(self) -> datetime: ...


class InMemoryKeySigner:
    """A fake with the KMS adapter's contract on a local P-256 key: SHA-256(message) signed,
    verified before it is returned (use-case tests, the bench's in-memory run)."""

    def __init__(self, key_ref: str = "in-memory-key", created_at: datetime | None = None) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        public = self._public = self._key.public_key()  # loaded once, as the KMS adapter's is
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.keyid = sha256_b64url(der)
        self.key_ref = key_ref
        self.public_key_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        self._created_at = created_at or datetime.now(UTC)

    def sign(self, message: bytes) -> bytes:
        digest = hashlib.sha256(message).digest()
        signature: bytes = self._key.sign(digest, _ECDSA_SHA256_DIGEST)
        self._public.verify(signature, digest, _ECDSA_SHA256_DIGEST)
        return signature

    def prepare(self) -> None:
        return None

    def created_at(self) -> datetime:
        return self._created_at


class KmsKeyring:
    """Every KMS key the installation signs or signed with (spec §3.5, §5.5): the default key, the
    per-tenant keys of ``TenantSigningKeys`` and the retired keys of ``RetiredSigningKeys``, which
    never sign again but stay published with their window. Each public key is read once per
    container (``prepare``, at a cold start)."""

    def __init__(
        self,
        default: ManagedKey,
        tenants: Mapping[str, ManagedKey] | None = None,
        retired: Sequence[tuple[ManagedKey, datetime]] = (),
    ) -> None:
        self._default = default
        self._tenants = dict(tenants or {})
        self._retired = list(retired)
        self._envelopes = {id(s): KmsEnvelopeSigner(s) for s in (default, *self._tenants.values())}

    @classmethod
    def of_kms(
        cls,
        client: KMSClient,
        default: str,
        tenants: Mapping[str, str] | None = None,
        retired: Sequence[tuple[str, datetime]] = (),
    ) -> KmsKeyring:
        """The keyring of KMS keys named by ARN or alias (one signer per distinct name)."""
        signers: dict[str, KmsKeySigner] = {}

        def signer(reference: str) -> KmsKeySigner:
            return signers.setdefault(reference, KmsKeySigner(client, reference))

        return cls(
            signer(default),
            {tenant: signer(reference) for tenant, reference in (tenants or {}).items()},
            [(KmsKeySigner(client, arn), not_after) for arn, not_after in retired],
        )

    @property
    def default(self) -> ManagedKey:
        return self._default

    def for_tenant(self, tenant: str) -> KmsEnvelopeSigner:
        """The envelope signer of ``tenant``'s key, or of the default key."""
        return self._envelopes[id(self._tenants.get(tenant, self._default))]

    def prepare(self) -> None:
        """Read every public key; a key that is misconfigured, unreadable, or both retired and still
        configured to sign, raises ConfigurationError naming it."""
        active = {id(s): s for s in (self._default, *self._tenants.values())}
        for key in (*active.values(), *(k for k, _ in self._retired)):
            key.prepare()
        retired = {key.key_ref for key, _ in self._retired}
        for key in active.values():
            if key.key_ref in retired:
                raise ConfigurationError(f"KMS key {key.key_ref} is listed as retired but still signs")

    def published(self) -> list[PublishedKey]:
        """The keys ``/keys`` lists, each once: active ones first, then the retired ones."""
        entries: dict[str, PublishedKey] = {}
        for key in (self._default, *self._tenants.values()):
            entries.setdefault(key.key_ref, _published(key, "active", None))
        for key, not_after in self._retired:
            entries.setdefault(key.key_ref, _published(key, "retired", not_after))
        return list(entries.values())


def _published(key: ManagedKey, status: str, not_after: datetime | None) -> PublishedKey:
    return PublishedKey(
        keyid=key.keyid,
        key_ref=key.key_ref,
        public_key_pem=key.public_key_pem,
        status=status,
        not_before=key.created_at(),
        not_after=not_after,
    )


__all__ = [
    "KEY_SPEC",
    "SIGNING_ALGORITHM",
    "InMemoryKeySigner",
    "KmsEnvelopeSigner",
    "KmsKeySigner",
    "KmsKeyring",
    "ManagedKey",
]
