"""JWKS sources: inline, or fetched, cached and refreshed when a token names a new key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.jwks import RemoteKeySet, StaticKeySet
from stellaops_signer.domain.errors import ConfigurationError, InvalidToken


def _jwks(*kids: str) -> dict[str, Any]:
    keys = []
    for kid in kids:
        jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
        keys.append({**jwk, "kid": kid})
    return {"keys": keys}


class Authority:
    """Stands in for the Authority's JWKS endpoint: answers what it publishes, counts fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.down = False

    def fetch(self, url: str) -> Any:
        assert url == "https://authority.example/.well-known/jwks.json"
        self.fetches += 1
        if self.down:
            raise ConnectionError("unreachable")
        return json.loads(json.dumps(self.jwks))


URL = "https://authority.example/.well-known/jwks.json"


def test_keys_are_fetched_once_and_cached() -> None:
    authority, clock = Authority(_jwks("k1")), FixedClock(1000)
    source = RemoteKeySet(URL, authority.fetch, clock)
    for _ in range(5):
        assert source.key_set("k1").find("k1") is not None
    assert authority.fetches == 1


def test_a_new_kid_triggers_a_refetch_at_most_every_30_seconds() -> None:
    authority, clock = Authority(_jwks("k1")), FixedClock(1000)
    source = RemoteKeySet(URL, authority.fetch, clock)
    source.key_set("k1")
    authority.jwks = _jwks("k1", "k2")
    assert source.key_set("k2").find("k2") is None  # within the cooldown: no refetch
    clock.advance(31)
    assert source.key_set("k2").find("k2") is not None
    assert authority.fetches == 2
    assert source.key_set("unknown").find("unknown") is None
    assert authority.fetches == 2


def test_cached_keys_survive_an_outage_but_no_keys_refuse() -> None:
    authority, clock = Authority(_jwks("k1")), FixedClock(1000)
    source = RemoteKeySet(URL, authority.fetch, clock)
    source.key_set("k1")
    authority.down = True
    clock.advance(400)
    assert source.key_set("k1").find("k1") is not None
    with pytest.raises(InvalidToken):
        RemoteKeySet(URL, authority.fetch, clock).key_set("k1")


def test_private_keys_or_garbage_in_an_inline_jwks_stop_the_cold_start() -> None:
    private = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    for text in ("not json", "{}", json.dumps({"keys": [private]})):
        with pytest.raises(ConfigurationError):
            StaticKeySet(text)
