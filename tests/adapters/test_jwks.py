"""JWKS sources (spec §3.1, §5.1): inline, or fetched over HTTP from a scripted issuer endpoint,
cached and refreshed when a token names a new key; one unusable key never takes the others down."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.jwks import RemoteKeySet, StaticKeySet
from stellaops_signer.domain.errors import ConfigurationError, EntitlementUnavailable, InvalidToken
from tests.http_double import ScriptedServer

PATH = "/.well-known/jwks.json"


def _jwk(kid: str, curve: ec.EllipticCurve | None = None) -> dict[str, Any]:
    key = ec.generate_private_key(curve or ec.SECP256R1()).public_key()
    return {**json.loads(ECAlgorithm.to_jwk(key)), "kid": kid}


def _jwks(*kids: str) -> dict[str, Any]:
    return {"keys": [_jwk(kid) for kid in kids]}


def _publish(server: ScriptedServer, document: Any) -> None:
    server.answer(PATH, body=document if isinstance(document, str) else json.dumps(document))


def _source(server: ScriptedServer, clock: FixedClock, unavailable: Any = InvalidToken) -> RemoteKeySet:
    return RemoteKeySet(server.base_url + PATH, clock, unavailable)


def test_keys_are_fetched_once_and_cached(scripted_server: ScriptedServer) -> None:
    _publish(scripted_server, _jwks("k1"))
    source = _source(scripted_server, FixedClock(1000))
    for _ in range(5):
        assert source.key_set("k1").find("k1") is not None
    assert len(scripted_server.requests) == 1


def test_a_new_kid_triggers_a_refetch_at_most_every_30_seconds(scripted_server: ScriptedServer) -> None:
    clock = FixedClock(1000)
    _publish(scripted_server, _jwks("k1"))
    source = _source(scripted_server, clock)
    source.key_set("k1")
    _publish(scripted_server, _jwks("k1", "k2"))
    assert source.key_set("k2").find("k2") is None  # within the cooldown: no refetch
    clock.advance(31)
    assert source.key_set("k2").find("k2") is not None
    assert len(scripted_server.requests) == 2
    assert source.key_set("unknown").find("unknown") is None
    assert len(scripted_server.requests) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, '{"error": "down"}'),
        (200, "not json"),
        (200, "[]"),
        (200, '{"keys": "none"}'),
        (200, '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'),
        (200, "x" * (300 * 1024)),
    ],
    ids=["5xx", "not-json", "a-list", "keys-not-a-list", "no-usable-key", "too-large"],
)
def test_a_misbehaving_endpoint_keeps_the_cached_keys_and_refuses_without_any(
    scripted_server: ScriptedServer, status: int, body: str
) -> None:
    clock = FixedClock(1000)
    _publish(scripted_server, _jwks("k1"))
    source = _source(scripted_server, clock)
    source.key_set("k1")
    scripted_server.answer(PATH, status, body)
    clock.advance(400)
    assert source.key_set("k1").find("k1") is not None
    with pytest.raises(EntitlementUnavailable):  # each source refuses with its dependency's error
        _source(scripted_server, clock, EntitlementUnavailable).key_set("k1")


def test_an_unreachable_endpoint_without_cached_keys_refuses(scripted_server: ScriptedServer) -> None:
    source = RemoteKeySet("http://127.0.0.1:9/jwks.json", FixedClock(1000), InvalidToken)
    with pytest.raises(InvalidToken, match="unavailable"):
        source.key_set("k1")


@pytest.mark.parametrize(
    "unusable",
    [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        _jwk("p521", ec.SECP521R1()),
        {
            **json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 1024).public_key())),
            "kid": "rsa1024",
        },
        {"kty": "EC", "crv": "P-256", "x": 7, "y": None, "kid": "garbage"},
        "not an object",
    ],
    ids=["oct", "P-521", "RSA-1024", "malformed", "not-an-object"],
)
def test_one_unsupported_key_is_skipped_and_the_others_keep_working(
    scripted_server: ScriptedServer, unusable: Any
) -> None:
    document = _jwks("k1")
    document["keys"].insert(0, unusable)
    _publish(scripted_server, document)
    keys = _source(scripted_server, FixedClock(1000)).key_set("k1")
    assert keys.find("k1") is not None and len(keys.keys) == 1 and len(keys.skipped) == 1
    inline = StaticKeySet(json.dumps(document)).key_set(None)
    assert inline.find("k1") is not None


def test_a_key_with_a_repeated_member_is_skipped(scripted_server: ScriptedServer) -> None:
    good, twin = _jwk("k1"), _jwk("k2")
    text = json.dumps({"keys": [good, twin]})
    text = text.replace('"kid": "k2"', '"kid": "k2", "x": "' + good["x"] + '"')  # k2 names x twice
    _publish(scripted_server, text)
    keys = _source(scripted_server, FixedClock(1000)).key_set("k1")
    assert keys.find("k1") is not None and keys.find("k2") is None


def test_two_keys_with_one_kid_refuse_the_set() -> None:
    with pytest.raises(ConfigurationError, match="two keys with kid 'k1'"):
        StaticKeySet(json.dumps({"keys": [_jwk("k1"), _jwk("k1")]}))


def test_private_keys_or_garbage_in_an_inline_jwks_stop_the_cold_start() -> None:
    private = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    for text in (
        "not json",
        "{}",
        json.dumps({"keys": [private]}),
        json.dumps({"keys": [_jwk("a"), private]}),
    ):
        with pytest.raises(ConfigurationError):
            StaticKeySet(text)
