"""JWKS sources: inline (air-gapped installations) or fetched over HTTPS and cached.

A JWKS is read leniently per key and strictly per document: a key this service cannot use
(another curve, a short RSA modulus, an ``oct`` key, a repeated member) is skipped and logged
once per container while the others keep working; a document that is no JWKS, holds no usable
key, publishes a private key or repeats a ``kid`` is refused whole.
"""

from __future__ import annotations

import threading

import requests

from stellaops_signer.domain.errors import ConfigurationError, SignerError
from stellaops_signer.domain.jose import tolerant_json
from stellaops_signer.domain.tokens import KeySet
from stellaops_signer.observability import logger
from stellaops_signer.ports import Clock

CACHE_SECONDS = 300
#: A token naming an unknown kid may trigger a refetch at most this often.
REFRESH_COOLDOWN_SECONDS = 30
MAX_JWKS_BYTES = 256 * 1024
TIMEOUT = (3.05, 3.0)

_logged: set[tuple[str, str]] = set()


def _log_skipped(source: str, keys: KeySet) -> None:
    for reason in keys.skipped:
        if (source, reason) not in _logged and len(_logged) < 256:
            _logged.add((source, reason))
            logger.warning("JWKS key skipped", extra={"jwks": source, "reason": reason})


def parse_jwks(document: str | bytes) -> KeySet:
    """Raises ValueError for a document that is not a usable JWKS."""
    return KeySet.from_jwks(tolerant_json(document))


class StaticKeySet:
    def __init__(self, jwks_json: str, variable: str = "the inline JWKS") -> None:
        try:
            self._keys = parse_jwks(jwks_json)
        except (ValueError, RecursionError) as exc:
            raise ConfigurationError(f"{variable} is not a usable JWKS: {exc}") from None
        _log_skipped(variable, self._keys)

    def key_set(self, kid: str | None) -> KeySet:
        return self._keys


class RemoteKeySet:
    """A JWKS URL, cached for five minutes; an unknown kid refetches (at most every 30 s).

    Whatever goes wrong fetching it — unreachable, a status other than 200, too large, not a
    usable JWKS — keeps the cached set when there is one, else raises ``unavailable``.
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        unavailable: type[SignerError],
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        self._clock = clock
        self._unavailable = unavailable
        # Trust as the runtime has it (public roots on Lambda; the local stack's REQUESTS_CA_BUNDLE names
        # its dev CA): unlike registries, these endpoints are the installation's own (decision 0011).
        self._http = session or requests.Session()
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
                    keys = self._fetch()
                    self._keys, self._fetched_at = keys, now
                except (requests.RequestException, ValueError, RecursionError) as exc:
                    logger.warning("JWKS fetch failed", extra={"jwks": self._url, "reason": str(exc)[:200]})
                    if self._keys is None:
                        raise self._unavailable("the issuer's keys are unavailable") from None
                    keys = self._keys
        assert keys is not None
        return keys

    def _fetch(self) -> KeySet:
        with self._http.get(self._url, timeout=TIMEOUT, stream=True, allow_redirects=False) as answer:
            if answer.status_code != 200:
                raise ValueError(f"the JWKS endpoint answered {answer.status_code}")
            body = answer.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("the JWKS is larger than allowed")
        keys = parse_jwks(body)
        _log_skipped(self._url, keys)
        return keys


__all__ = [
    "CACHE_SECONDS",
    "MAX_JWKS_BYTES",
    "REFRESH_COOLDOWN_SECONDS",
    "TIMEOUT",
    "RemoteKeySet",
    "StaticKeySet",
    "parse_jwks",
]
