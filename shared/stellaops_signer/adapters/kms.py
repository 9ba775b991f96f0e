"""KMS as a KeySigner: sign SHA-256(message) with MessageType=DIGEST, verify locally."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.domain.errors import ConfigurationError, SigningUnavailable
from stellaops_signer.domain.jose import b64url
from stellaops_signer.domain.signing import SignedBy
from stellaops_signer.ports import KeySigner

SIGNING_ALGORITHM = "ECDSA_SHA_256"
KEY_SPEC = "ECC_NIST_P256"


class KmsKeySigner:
    """One KMS key (ECC_NIST_P256, SIGN_VERIFY).

    The public key is fetched once per container (``GetPublicKey``); every signature KMS
    returns is verified with it before it leaves, so a wrong key spec or encoding cannot.
    """

    algorithm = SIGNING_ALGORITHM

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id
        self._lock = threading.Lock()
        self._public_key: ec.EllipticCurvePublicKey | None = None
        self._key_ref = key_id
        self._keyid = ""
        self._public_key_pem = ""

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
            if self._public_key is not None:
                return self._public_key
            try:
                answer = self._client.get_public_key(KeyId=self._key_id)
            except AWS_FAILURES as exc:
                raise SigningUnavailable("the signing key cannot be read") from exc
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
            self._key_ref = answer.get("KeyId", self._key_id)
            self._keyid = b64url(hashlib.sha256(der).digest())
            self._public_key_pem = public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode("ascii")
            self._public_key = public_key
            return public_key

    def sign(self, message: bytes) -> bytes:
        public_key = self._load()
        digest = hashlib.sha256(message).digest()
        try:
            answer = self._client.sign(
                KeyId=self._key_ref, Message=digest, MessageType="DIGEST", SigningAlgorithm=SIGNING_ALGORITHM
            )
        except AWS_FAILURES as exc:
            raise SigningUnavailable("KMS could not sign") from exc
        signature = answer.get("Signature") if isinstance(answer, dict) else None
        if not isinstance(signature, bytes):
            raise SigningUnavailable("KMS answered no signature")
        try:
            public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
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
