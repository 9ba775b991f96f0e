"""The size rule's arithmetic (spec §3.2): the envelope bound is tight, and never below the real size."""

from __future__ import annotations

import base64
import json
import os

import pytest

from stellaops_signer.domain.errors import ArtifactTooLarge
from stellaops_signer.domain.sizing import answer_bytes, base64_length, check_fits, envelope_bytes


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 1000, 99_999, 1_000_001])
def test_the_envelope_bound_is_at_most_the_signature_slack_above_the_real_envelope(size: int) -> None:
    payload = os.urandom(size)
    keyid = "k" * 43
    for signature_length in (70, 71, 72):  # DER ECDSA P-256 signatures vary in length
        envelope = {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(os.urandom(signature_length)).decode()}],
        }
        real = len(json.dumps(envelope, separators=(",", ":")))
        bound = envelope_bytes("application/vnd.in-toto+json", size, keyid)
        assert real <= bound <= real + 8


def test_base64_length_is_padded_base64() -> None:
    assert [base64_length(n) for n in range(7)] == [len(base64.b64encode(b"a" * n)) for n in range(7)]


def test_a_sigstore_bundle_counts_the_envelope_twice() -> None:
    assert answer_bytes(1000, sigstore=True) - answer_bytes(1000, sigstore=False) == 1000


def test_no_cap_and_no_carrier_refuse_nothing() -> None:
    check_fits(10**9, 10**9, carrier_limit=None, max_attestation=0)


def test_each_limit_refuses_naming_itself_and_the_size() -> None:
    with pytest.raises(ArtifactTooLarge, match="about 101 bytes; MaxAttestationBytes allows 100"):
        check_fits(101, 101, carrier_limit=None, max_attestation=100)
    with pytest.raises(ArtifactTooLarge, match="about 2001 bytes; a Lambda response carries at most 2000"):
        check_fits(10, 2001, carrier_limit=2000, max_attestation=0)
