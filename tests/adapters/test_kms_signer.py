"""The KMS KeySigner against moto (DIGEST-corrected): what leaves it always verifies independently."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from stellaops_signer.adapters.kms import KmsKeySigner
from stellaops_signer.domain.errors import ConfigurationError, SigningUnavailable
from stellaops_signer.domain.jose import b64url


def _verify(signer: KmsKeySigner, message: bytes, signature: bytes) -> None:
    key = load_pem_public_key(signer.public_key_pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, message, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature


@pytest.fixture
def signer(aws: Any) -> KmsKeySigner:
    return KmsKeySigner(aws.client("kms"), aws.physical["SigningKey"]["Arn"])


@pytest.mark.parametrize("size", [1, 4096, 4097, 1_000_000])
def test_signatures_over_any_message_size_verify_with_cryptography(signer: KmsKeySigner, size: int) -> None:
    message = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    _verify(signer, message, signer.sign(message))


def test_every_sign_call_sends_a_32_byte_digest(aws: Any) -> None:
    client = aws.client("kms")
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.kms.Sign", lambda params, **_: sent.append(dict(params))
    )
    KmsKeySigner(client, aws.physical["SigningKey"]["Arn"]).sign(b"y" * 10_000)
    assert [(p["MessageType"], len(p["Message"]), p["SigningAlgorithm"]) for p in sent] == [
        ("DIGEST", 32, "ECDSA_SHA_256")
    ]


def test_public_key_is_fetched_once_per_container(aws: Any) -> None:
    client = aws.client("kms")
    calls: list[str] = []
    client.meta.events.register("before-call.kms.*", lambda event_name, **_: calls.append(event_name))
    signer = KmsKeySigner(client, aws.physical["SigningKey"]["Arn"])
    for _ in range(3):
        signer.sign(b"m")
    assert calls.count("before-call.kms.GetPublicKey") == 1 and calls.count("before-call.kms.Sign") == 3


def test_keyid_is_the_base64url_sha256_of_the_public_key(signer: KmsKeySigner, aws: Any) -> None:
    import hashlib

    der = aws.client("kms").get_public_key(KeyId=aws.physical["SigningKey"]["Arn"])["PublicKey"]
    assert signer.keyid == b64url(hashlib.sha256(der).digest())
    assert signer.key_ref == aws.physical["SigningKey"]["Arn"]


def test_signature_that_does_not_verify_never_leaves(
    signer: KmsKeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    signer.sign(b"warm")  # loads the real public key
    wrong = other.sign(b"anything", ec.ECDSA(hashes.SHA256()))
    monkeypatch.setattr(signer._client, "sign", lambda **_: {"Signature": wrong})  # a KMS answering garbage
    with pytest.raises(SigningUnavailable, match="does not verify"):
        signer.sign(b"message")


def test_disabled_key_is_signing_unavailable(aws: Any, signer: KmsKeySigner) -> None:
    aws.client("kms").disable_key(KeyId=aws.physical["SigningKey"]["KeyId"])
    with pytest.raises(SigningUnavailable):
        signer.sign(b"message")


def test_key_that_is_not_p256_sign_verify_stops_the_container(aws: Any) -> None:
    kms = aws.client("kms")
    for spec, usage in (
        ("RSA_2048", "SIGN_VERIFY"),
        ("ECC_NIST_P384", "SIGN_VERIFY"),
        ("RSA_2048", "ENCRYPT_DECRYPT"),
    ):
        key = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["Arn"]
        with pytest.raises(ConfigurationError):
            KmsKeySigner(kms, key).sign(b"m")


def test_unknown_key_is_signing_unavailable(aws: Any) -> None:
    with pytest.raises(SigningUnavailable):
        KmsKeySigner(aws.client("kms"), "arn:aws:kms:us-east-1:123456789012:key/missing").sign(b"m")


def test_corrected_moto_refuses_raw_messages_above_4096_bytes(aws: Any) -> None:
    """The local correction must keep moto honest about RAW, as KMS is (spec §10)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="4096"):
        aws.client("kms").sign(
            KeyId=aws.physical["SigningKey"]["Arn"],
            Message=b"x" * 4097,
            MessageType="RAW",
            SigningAlgorithm="ECDSA_SHA_256",
        )
