"""DPoP pieces on their own: RFC 3986 normalisation of htu, stateless nonces, proof checks."""

from __future__ import annotations

import time

import pytest

from local.dpop import DpopKey
from stellaops_signer.domain.dpop import NonceKeeper, normalize_uri, verify_proof
from stellaops_signer.domain.errors import InvalidDpopProof, UseDpopNonce

NOW = 1_800_000_000
URL = "https://signer.example.com/api/v1/signer/sign/dsse"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTPS://Signer.Example.COM/a", "https://signer.example.com/a"),  # §6.2.2.1 case
        ("https://signer.example.com:443/a", "https://signer.example.com/a"),  # §6.2.3 default port
        ("http://signer.example.com:80/a", "http://signer.example.com/a"),
        ("https://signer.example.com:8443/a", "https://signer.example.com:8443/a"),
        ("https://signer.example.com", "https://signer.example.com/"),  # §6.2.3 empty path
        ("https://signer.example.com/a/./b/../c", "https://signer.example.com/a/c"),  # §6.2.2.3 dot segments
        ("https://signer.example.com/a/b/..", "https://signer.example.com/a/"),
        (
            "https://signer.example.com/%7euser/%41",
            "https://signer.example.com/~user/A",
        ),  # §6.2.2.2 unreserved
        ("https://signer.example.com/a%2fb", "https://signer.example.com/a%2Fb"),  # §6.2.2.1 hex case
        ("https://signer.example.com/a?x=1#f", "https://signer.example.com/a"),  # query and fragment dropped
        ("https://[::1]:443/a", "https://[::1]/a"),
    ],
)
def test_uris_are_normalised_as_rfc_3986_section_6_says(given: str, normal: str) -> None:
    assert normalize_uri(given) == normal


@pytest.mark.parametrize(
    "bad", ["ftp://signer.example.com/a", "/relative", "https://user:pw@signer.example.com/"]
)
def test_uris_that_cannot_be_an_htu_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_uri(bad)


def test_nonces_are_accepted_for_their_ttl_and_refused_after() -> None:
    keeper = NonceKeeper(b"k" * 32, ttl_seconds=300)
    nonce = keeper.issue(NOW)
    keeper.check(nonce, NOW + 250)
    with pytest.raises(UseDpopNonce) as refused:
        keeper.check(nonce, NOW + 331)
    assert refused.value.headers["DPoP-Nonce"] == keeper.issue(NOW + 331)


@pytest.mark.parametrize("nonce", [None, "", "AAAA", "x" * 32, NonceKeeper(b"o" * 32, 300).issue(NOW)])
def test_missing_malformed_or_foreign_nonces_ask_for_a_nonce(nonce: str | None) -> None:
    with pytest.raises(UseDpopNonce):
        NonceKeeper(b"k" * 32, ttl_seconds=300).check(nonce, NOW)


def test_nonce_keys_shorter_than_128_bits_are_refused() -> None:
    with pytest.raises(ValueError):
        NonceKeeper(b"short", ttl_seconds=300)


def test_a_proof_carries_its_key_thumbprint_jti_and_nonce() -> None:
    key, token = DpopKey(), "access-token"
    proof = verify_proof(
        key.proof("POST", URL, access_token=token, nonce="n", jti="j-1", iat=int(time.time())),
        method="POST",
        url=URL,
        access_token=token,
        expected_jkt=key.thumbprint,
        now=time.time(),
    )
    assert (proof.jkt, proof.jti, proof.nonce) == (key.thumbprint, "j-1", "n")
    other = DpopKey()
    assert (
        proof.replay_key
        != verify_proof(
            other.proof("POST", URL, access_token=token, jti="j-1"),
            method="POST",
            url=URL,
            access_token=token,
            expected_jkt=other.thumbprint,
            now=time.time(),
        ).replay_key
    )


def test_token_request_proofs_have_no_ath_and_no_expected_key() -> None:
    key = DpopKey()
    url = "https://authority.example/token"
    verify_proof(
        key.proof("POST", url), method="POST", url=url, access_token=None, expected_jkt=None, now=time.time()
    )
    with pytest.raises(InvalidDpopProof):
        verify_proof(
            key.proof("POST", url, access_token="t"),
            method="POST",
            url=url,
            access_token=None,
            expected_jkt=None,
            now=time.time(),
        )


def test_oversized_proofs_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidDpopProof, match="too large"):
        verify_proof("a" * 9000, method="POST", url=URL, access_token="t", expected_jkt="k", now=time.time())
