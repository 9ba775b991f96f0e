"""JWKS sources: inline (air-gapped installations) or fetched over HTTPS and cached."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from stellaops_signer.domain.errors import ConfigurationError, InvalidToken
from stellaops_signer.domain.tokens import KeySet
from stellaops_signer.ports import Clock

CACHE_SECONDS = 300
#: A token naming an unknown kid may trigger a refetch at most this often.
REFRESH_COOLDOWN_SECONDS = 30


class StaticKeySet:
    def __init__(self, jwks_json: str) -> None:
        try:
            self._keys = KeySet.from_jwks(json.loads(jwks_json))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"the inline JWKS is malformed: {exc}") from None

    def key_set(self, kid: str | None) -> KeySet:
        return self._keys


class RemoteKeySet:
    """A JWKS URL, cached for five minutes; an unknown kid refetches (at most every 30 s)."""

    def __init__(self, url: str, fetch: Callable[[str], Any], clock: Clock) -> None:
        self._url = url
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")

    def key_set(self, kid: str | None) -> KeySet:
        now = self._clock.now()
        keys = self._keys
        stale = keys is None or now - self._fetched_at > CACHE_SECONDS
        unknown = keys is not None and kid is not None and keys.find(kid) is None
        if stale or (unknown and now - self._fetched_at > REFRESH_COOLDOWN_SECONDS):
            with self._lock:
                try:
                    keys = KeySet.from_jwks(self._fetch(self._url))
                    self._keys, self._fetched_at = keys, now
                except Exception:  # any fetch or parse failure: keep a cached set if we have one
                    if self._keys is None:
                        raise InvalidToken("the issuer's keys are unavailable") from None
                    keys = self._keys
        assert keys is not None
        return keys
