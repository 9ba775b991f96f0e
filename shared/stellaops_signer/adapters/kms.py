"""KMS as a KeySigner: sign SHA-256(message) with MessageType=DIGEST, verify locally."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from stellaops_signer.domain.errors import ConfigurationError, SigningUnavailable
from stellaops_signer.domain.jose import b64url

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
            except (ClientError, BotoCoreError) as exc:
                raise SigningUnavailable("the signing key cannot be read") from exc
            if answer.get("KeySpec") != KEY_SPEC or answer.get("KeyUsage") != "SIGN_VERIFY":
                raise ConfigurationError(f"KMS key {self._key_id} must be {KEY_SPEC} with SIGN_VERIFY")
            if SIGNING_ALGORITHM not in answer.get("SigningAlgorithms", []):
                raise ConfigurationError(f"KMS key {self._key_id} does not offer {SIGNING_ALGORITHM}")
            der = answer["PublicKey"]
            public_key = serialization.load_der_public_key(der)
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
        except (ClientError, BotoCoreError) as exc:
            raise SigningUnavailable("KMS could not sign") from exc
        signature: bytes = answer["Signature"]
        try:
            public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise SigningUnavailable("KMS returned a signature that does not verify") from None
        return signature
