"""verify_release: is the calling scanner a genuine Stella Ops release? (spec §5.3, §3.3)

The check the signing path runs before any signature exists, and the one
``GET /api/v1/signer/verify/referrers`` answers. Verdicts are cached per container and in
DynamoDB, keyed by digest and the hash of the trust configuration (keys + repositories):
a change of trusted keys can never be answered from an old verdict. Trusted verdicts live
an hour, untrusted ones a minute.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

from stellaops_signer.domain.audit import AuditRecord, iso_time
from stellaops_signer.domain.authorization import SIGN_SCOPE, VERIFY_SCOPE, authorize
from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.errors import InvalidRequest, ReleaseUntrusted, SignerError, on_refusal
from stellaops_signer.domain.release import ReleaseVerdict, TrustedKey, evaluate, trust_configuration_hash
from stellaops_signer.observability import count, logger
from stellaops_signer.ports import AuditLog, Cache, Clock, NewId, SignatureSource
from stellaops_signer.usecases.meta import RequestMeta

_IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The OCI distribution spec's repository name grammar: lower-case path components
# joined by "/", each separated internally by ".", "_", "__" or dashes.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")

TRUSTED_TTL_SECONDS = 3600
UNTRUSTED_TTL_SECONDS = 60
#: The per-container copy is younger than the shared one, so no instance lags far behind a change.
LOCAL_TTL_SECONDS = 300


class ReleaseVerifier:
    def __init__(
        self,
        *,
        registry: SignatureSource,
        keys: Sequence[TrustedKey],
        scanner_repositories: Sequence[str],
        allow_list: Sequence[str],
        cache: Cache,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._keys = tuple(keys)
        self._repositories = tuple(scanner_repositories)
        self._default_trust = trust_configuration_hash(self._keys, self._repositories)
        self._allow = frozenset(allow_list)
        self._cache = cache
        self._clock = clock
        self._local: dict[str, tuple[float, ReleaseVerdict]] = {}
        self._lock = threading.Lock()

    @property
    def trusted_keys(self) -> tuple[TrustedKey, ...]:
        return self._keys

    def verify(self, digest: str, repository: str | None = None) -> ReleaseVerdict:
        """The verdict for ``digest`` in ``repository`` (default: every scanner repository).

        Raises InvalidRequest for a repository outside the allow-list and ReleaseUnverifiable
        when a registry cannot answer; an untrusted verdict is returned, not raised.
        """
        repositories = self._repositories if repository is None else (self._allowed(repository),)
        trust = (
            self._default_trust if repository is None else trust_configuration_hash(self._keys, repositories)
        )
        key = f"release#{digest}#{trust}"
        with self._lock:
            local = self._local.get(key)
        if local and local[0] > self._clock.now():
            return local[1]
        shared = self._cache.get(key)
        if shared is not None:
            verdict = ReleaseVerdict.from_cache(shared)
            self._remember(key, verdict)
            return verdict
        candidates = [c for repo in repositories for c in self._registry.collect(repo, digest)]
        verdict = evaluate(digest, candidates, self._keys)
        count("ReleaseVerifications." + ("trusted" if verdict.trusted else "untrusted"))
        ttl = TRUSTED_TTL_SECONDS if verdict.trusted else UNTRUSTED_TTL_SECONDS
        self._cache.put(key, verdict.to_cache(), ttl)
        self._remember(key, verdict)
        return verdict

    def _allowed(self, repository: str) -> str:
        registry, _, name = repository.partition("/")
        if not name or registry not in self._allow:
            raise InvalidRequest("repository must be <registry>/<path> on an allow-listed registry")
        if len(name) > 255 or not _REPOSITORY_NAME.fullmatch(name):
            raise InvalidRequest(
                "repository path must be an OCI repository name (lower-case components joined by '/')"
            )
        return repository

    def _remember(self, key: str, verdict: ReleaseVerdict) -> None:
        ttl = min(LOCAL_TTL_SECONDS, TRUSTED_TTL_SECONDS if verdict.trusted else UNTRUSTED_TTL_SECONDS)
        with self._lock:
            if len(self._local) > 4096:
                self._local.clear()
            # Kept as a cached verdict reads (``cached`` set), made once, not on every use.
            self._local[key] = (self._clock.now() + ttl, _cached(verdict))


def _cached(verdict: ReleaseVerdict) -> ReleaseVerdict:
    return verdict if verdict.cached else ReleaseVerdict.from_cache(verdict.to_cache())


class ReleaseQuery:
    """``GET /api/v1/signer/verify/referrers``: the release check as a question (spec §3.3).

    An untrusted scanner is an answer (200, ``trusted: false`` with a reason); a registry
    that cannot answer is ``release_unverifiable``. Every answer leaves an audit record.
    """

    def __init__(self, *, verifier: ReleaseVerifier, audit: AuditLog, clock: Clock, new_id: NewId) -> None:
        self._verifier = verifier
        self._audit = audit
        self._clock = clock
        self._new_id = new_id

    def __call__(
        self, principal: Principal, digest: str | None, repository: str | None, meta: RequestMeta
    ) -> ReleaseVerdict:
        with on_refusal(lambda refusal: self._record(principal, digest, meta, None, refusal)):
            authorize(principal, (SIGN_SCOPE, VERIFY_SCOPE), meta.tenant_header)
            if not isinstance(digest, str) or not _IMAGE_DIGEST.fullmatch(digest):
                raise InvalidRequest("digest must be sha256:<64 lowercase hex>")
            verdict = self._verifier.verify(digest, repository)
        self._record(principal, digest, meta, verdict, None)
        return verdict

    def require_trusted(
        self, principal: Principal, digest: str | None, repository: str | None, meta: RequestMeta
    ) -> ReleaseVerdict:
        """The pipeline's VerifyRelease step: the same question, but an untrusted scanner fails the
        step (ReleaseUntrusted) so that the pipeline gives its reservation back."""
        verdict = self(principal, digest, repository, meta)
        if not verdict.trusted:
            raise ReleaseUntrusted(verdict.reason)
        return verdict

    def _record(
        self,
        principal: Principal,
        digest: str | None,
        meta: RequestMeta,
        verdict: ReleaseVerdict | None,
        error: SignerError | None,
    ) -> None:
        trusted = verdict is not None and verdict.trusted
        code = error.code if error else ("" if trusted else ReleaseUntrusted.code)
        record = AuditRecord(
            audit_id=self._new_id(),
            time=iso_time(self._clock.now()),
            route=meta.route,
            decision="allow" if trusted else "deny",
            correlation_id=meta.correlation_id,
            latency_ms=int((time.perf_counter() - meta.started) * 1000),
            error_code=code,
            tenant=principal.tenant,
            installation=principal.installation,
            subject=principal.subject,
            client_id=principal.client_id,
            binding=principal.binding,
            scanner_digest=digest if isinstance(digest, str) and len(digest) < 80 else "",
            key_id=verdict.release_signer if verdict else "",
        )
        try:
            self._audit.record(record)
        except SignerError:
            if error is None:
                raise  # an answer leaves only after its audit record is stored
            logger.warning("refusal not audited", extra={"code": code})


__all__ = [
    "LOCAL_TTL_SECONDS",
    "TRUSTED_TTL_SECONDS",
    "UNTRUSTED_TTL_SECONDS",
    "ReleaseQuery",
    "ReleaseVerifier",
]
