"""DSSE v1: pre-authentication encoding and the envelope (spec §5.5), cross-checked with securesystemslib."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib import dsse as sslib_dsse
from securesystemslib.signer import SSlibKey

from stellaops_signer.domain.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, pae


def test_pae_matches_the_dsse_known_answer() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_lengths_are_utf8_byte_lengths_not_character_counts() -> None:
    payload_type = "application/vnd.stellaops.é+json"  # 32 characters, 33 bytes
    body = "Grüße 😀".encode()  # 7 characters, 12 bytes
    assert pae(payload_type, body) == b"DSSEv1 33 " + payload_type.encode() + b" 12 " + body


def test_pae_of_an_empty_payload() -> None:
    assert pae("t", b"") == b"DSSEv1 1 t 0 "


@pytest.mark.parametrize(
    ("payload_type", "payload"),
    [
        ("http://example.com/HelloWorld", b"hello world"),
        (IN_TOTO_PAYLOAD_TYPE, b'{"_type":"https://in-toto.io/Statement/v1"}'),
        ("type with spaces é😀", "body with spaces and ünïcode 😀".encode()),
        ("", b""),
        ("t", bytes(range(256)) * 40),
    ],
    ids=["hello_world", "in_toto", "non_ascii", "empty", "binary_10k"],
)
def test_pae_equals_securesystemslib_pae(payload_type: str, payload: bytes) -> None:
    independent = sslib_dsse.Envelope(payload=payload, payload_type=payload_type, signatures={})
    assert pae(payload_type, payload) == independent.pae()


def test_envelope_json_has_the_dsse_shape_with_standard_base64() -> None:
    payload = b"\xfb\xff payload that needs + and / in base64"
    envelope = Envelope(IN_TOTO_PAYLOAD_TYPE, payload, (Signature("key-1", b"\xfa\xfb\xfc\xfd"),))
    document = envelope.to_json()
    assert document == {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "key-1", "sig": "+vv8/Q=="}],
    }
    assert "+" in document["payload"] or "/" in document["payload"]  # standard alphabet, not base64url


def test_envelope_signed_over_pae_verifies_with_securesystemslib() -> None:
    # GIVEN an envelope whose signature is ECDSA P-256 over our PAE
    private_key = ec.generate_private_key(ec.SECP256R1())
    payload = b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"x":"\xc3\xa9"}}'
    signature = private_key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    envelope = Envelope(IN_TOTO_PAYLOAD_TYPE, payload, (Signature("key-1", signature),))
    # WHEN an independent implementation reads and verifies it
    key = SSlibKey.from_crypto(private_key.public_key(), keyid="key-1")
    independent = sslib_dsse.Envelope.from_dict(envelope.to_json())
    accepted = independent.verify([key], threshold=1)
    # THEN it accepts it and sees the same bytes
    assert list(accepted) == ["key-1"]
    assert independent.payload == payload
    assert independent.payload_type == IN_TOTO_PAYLOAD_TYPE
