"""Make moto's KMS ``Sign`` and ``GetPublicKey`` behave like AWS KMS (spec §10).

moto 5.2.x ignores ``MessageType=DIGEST`` (it hashes the digest again), accepts RAW
messages above 4096 bytes and lets disabled keys sign. The Signer relies on DIGEST, so the
test and local processes replace moto's ``KmsResponse.sign`` with one that follows the
KMS API reference: DIGEST messages are signed as pre-hashed and must be exactly the
digest length of the algorithm; RAW messages are limited to 4096 bytes; only enabled
SIGN_VERIFY keys sign. Signatures are still checked with ``cryptography`` elsewhere,
never with moto's own ``Verify``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

_MAX_RAW_BYTES = 4096
_DIGEST_BYTES = {
    "ECDSA_SHA_256": 32,
    "ECDSA_SHA_384": 48,
    "ECDSA_SHA_512": 64,
    "RSASSA_PSS_SHA_256": 32,
    "RSASSA_PSS_SHA_384": 48,
    "RSASSA_PSS_SHA_512": 64,
    "RSASSA_PKCS1_V1_5_SHA_256": 32,
    "RSASSA_PKCS1_V1_5_SHA_384": 48,
    "RSASSA_PKCS1_V1_5_SHA_512": 64,
}
_patched = False


def _prehashed_sign(private_key: Any, digest: bytes, algorithm: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    hash_algorithm: Any = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[len(digest)]
    if algorithm.startswith("ECDSA"):
        return private_key.sign(digest, ec.ECDSA(Prehashed(hash_algorithm)))
    if algorithm.startswith("RSASSA_PSS"):
        # Real KMS uses a salt as long as the digest (moto uses the maximum).
        pad = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=len(digest))
        return private_key.sign(digest, pad, Prehashed(hash_algorithm))
    return private_key.sign(digest, padding.PKCS1v15(), Prehashed(hash_algorithm))


def apply() -> None:
    """Patch moto's KMS Sign in this process (idempotent)."""
    global _patched
    if _patched:
        return
    from moto.core.exceptions import JsonRESTError
    from moto.kms.exceptions import InvalidKeyUsageException, ValidationException
    from moto.kms.models import kms_backends
    from moto.kms.responses import KmsResponse

    class KMSInvalidStateException(JsonRESTError):
        def __init__(self, message: str) -> None:
            super().__init__("KMSInvalidStateException", message)

    def sign(self: Any) -> str:
        key_id = self._get_param("KeyId")
        message = self._get_param("Message")
        message_type = self._get_param("MessageType") or "RAW"
        algorithm = self._get_param("SigningAlgorithm")
        self._validate_key_id(key_id)
        backend = kms_backends[self.current_account][self.region]
        key = backend.describe_key(key_id)
        if not message:  # _get_param has already base64-decoded the blob
            raise ValidationException("Message must have length greater than or equal to 1")
        if key.key_state != "Enabled":
            raise KMSInvalidStateException(f"{key.arn} is {key.key_state}.")
        if key.key_usage != "SIGN_VERIFY":
            raise InvalidKeyUsageException(
                f"{key.arn} key usage is {key.key_usage} which is not valid for Sign."
            )
        if algorithm not in key.signing_algorithms:
            raise ValidationException(f"SigningAlgorithm {algorithm} is not valid for {key.arn}.")
        if message_type == "DIGEST":
            if len(message) != _DIGEST_BYTES[algorithm]:
                raise ValidationException("Digest is invalid length for algorithm " + algorithm + ".")
            signature = _prehashed_sign(key.private_key.private_key, message, algorithm)
        elif message_type == "RAW":
            if len(message) > _MAX_RAW_BYTES:
                raise ValidationException("Message must have length less than or equal to 4096")
            signature = key.private_key.sign(message, algorithm)
        else:
            raise ValidationException(f"MessageType {message_type} is not valid")
        return json.dumps(
            {
                "KeyId": key.arn,
                "Signature": base64.b64encode(signature).decode(),
                "SigningAlgorithm": algorithm,
            }
        )

    def get_public_key(self: Any) -> str:
        # AWS answers KeySpec (and the deprecated CustomerMasterKeySpec) and the key ARN.
        key_id = self._get_param("KeyId")
        self._validate_key_id(key_id)
        key, public_key = kms_backends[self.current_account][self.region].get_public_key(key_id)
        answer = {
            "KeySpec": key.key_spec,
            "CustomerMasterKeySpec": key.key_spec,
            "KeyId": key.arn,
            "KeyUsage": key.key_usage,
            "PublicKey": base64.b64encode(public_key).decode(),
            "SigningAlgorithms": key.signing_algorithms,
        }
        if key.key_usage == "ENCRYPT_DECRYPT":
            answer["EncryptionAlgorithms"] = key.encryption_algorithms
        return json.dumps(answer)

    KmsResponse.sign = sign
    KmsResponse.get_public_key = get_public_key
    _patched = True
