"""An OCI distribution client for release verification (OCI distribution spec v1.1).

Collects the cosign signatures of an image digest: the Referrers API
(``GET /v2/<name>/referrers/<digest>``, paginated by ``Link``), and on 404 the tag-schema
fallback (cosign's ``sha256-<hex>.sig`` and the ``sha256-<hex>`` referrers index). Every
manifest fetched by digest and every blob is checked against its digest and size cap.
HTTPS to allow-listed registries only (plain HTTP to loopback only when explicitly allowed,
for tests); the registry token flow (``WWW-Authenticate: Bearer realm=…``) and ECR
``GetAuthorizationToken``. Any failure — network, timeout, 5xx, malformed answer — raises
ReleaseUnverifiable; nothing here decides trust.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from stellaops_signer.domain.errors import ReleaseUnverifiable
from stellaops_signer.domain.release import (
    COSIGN_ARTIFACT_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    CandidateSignature,
)

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 1024 * 1024  # a simple-signing payload is a few hundred bytes
MAX_REFERRER_PAGES = 10
MAX_SIGNATURE_MANIFESTS = 32
TIMEOUT = (3.05, 5.0)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def split_repository(reference: str) -> tuple[str, str]:
    """``registry.example/stellaops/scanner`` → (``registry.example``, ``stellaops/scanner``)."""
    registry, _, name = reference.partition("/")
    if not registry or not name:
        raise ValueError(f"{reference!r} is not <registry>/<repository>")
    return registry, name


class RegistryClient:
    """One client per container; thread-safe (tokens are cached under a lock)."""

    def __init__(
        self,
        *,
        allow_list: Sequence[str],
        insecure_loopback: bool = False,
        session: requests.Session | None = None,
        ecr_token: Callable[[str], str] | None = None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self._allow = frozenset(allow_list)
        self._insecure_loopback = insecure_loopback
        self._http = session or requests.Session()
        self._http.trust_env = False  # no proxies or CA bundles from the environment
        self._ecr_token = ecr_token
        self._timeout = timeout
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        #: Requests made to registries, for tests and benchmarks.
        self.calls = 0

    # --- what the verifier asks --------------------------------------------------------

    def collect(self, repository: str, digest: str) -> list[CandidateSignature]:
        """Every simple-signing signature attached to ``digest`` in ``repository``."""
        registry, name = split_repository(repository)
        base = self._base(registry)
        descriptors = self._referrers(base, name, digest)
        candidates: list[CandidateSignature] = []
        if descriptors is not None:
            for descriptor in descriptors[:MAX_SIGNATURE_MANIFESTS]:
                if descriptor.get("artifactType") == COSIGN_ARTIFACT_TYPE:
                    candidates += self._signatures(base, name, repository, descriptor["digest"], "referrers")
        if descriptors is None:
            index = self._manifest(base, name, "sha256-" + digest.removeprefix("sha256:"), optional=True)
            for descriptor in (index or {}).get("manifests", [])[:MAX_SIGNATURE_MANIFESTS]:
                if descriptor.get("artifactType") == COSIGN_ARTIFACT_TYPE:
                    candidates += self._signatures(base, name, repository, descriptor["digest"], "tag-schema")
        if not candidates:  # cosign's own storage: the .sig tag, whatever else the registry offers
            candidates += self._signatures(
                base,
                name,
                repository,
                "sha256-" + digest.removeprefix("sha256:") + ".sig",
                "tag-schema",
                optional=True,
            )
        return candidates

    # --- the protocol ------------------------------------------------------------------

    def _base(self, registry: str) -> str:
        if registry not in self._allow:
            raise ReleaseUnverifiable(f"registry {registry} is not allow-listed")
        host = urlsplit("//" + registry).hostname or ""
        scheme = "http" if self._insecure_loopback and host in _LOOPBACK else "https"
        return f"{scheme}://{registry}"

    def _referrers(self, base: str, name: str, digest: str) -> list[dict[str, Any]] | None:
        """The referrers' descriptors, following ``Link`` pages; None when the API is missing (404)."""
        url: str | None = (
            f"{base}/v2/{name}/referrers/{digest}?artifactType={quote(COSIGN_ARTIFACT_TYPE, safe='')}"
        )
        descriptors: list[dict[str, Any]] = []
        for page in range(MAX_REFERRER_PAGES):
            assert url is not None
            answer = self._get(url, name, accept="application/vnd.oci.image.index.v1+json")
            if answer.status_code == 404 and page == 0:
                return None
            index = self._json(answer, "referrers")
            manifests = index.get("manifests")
            if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
                raise ReleaseUnverifiable("the registry answered a malformed referrers index")
            descriptors += manifests
            url = self._next_page(base, answer)
            if url is None:
                return descriptors
        raise ReleaseUnverifiable("the referrers listing has too many pages")

    def _next_page(self, base: str, answer: requests.Response) -> str | None:
        match = _LINK_NEXT.search(answer.headers.get("Link", ""))
        if match is None:
            return None
        url: str = urljoin(base + "/", match.group(1))
        if urlsplit(url).netloc != urlsplit(base).netloc:
            raise ReleaseUnverifiable("a referrers page points to another host")
        return url

    def _signatures(
        self, base: str, name: str, repository: str, reference: str, source: str, *, optional: bool = False
    ) -> list[CandidateSignature]:
        manifest = self._manifest(base, name, reference, optional=optional)
        found = []
        for layer in (manifest or {}).get("layers", [])[:MAX_SIGNATURE_MANIFESTS]:
            if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
                continue
            signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
            if not isinstance(signature, str):
                continue
            payload = self._blob(base, name, layer)
            found.append(CandidateSignature(repository, payload, signature, source))
        return found

    def _manifest(
        self, base: str, name: str, reference: str, *, optional: bool = False
    ) -> dict[str, Any] | None:
        answer = self._get(f"{base}/v2/{name}/manifests/{reference}", name, accept=", ".join(MANIFEST_TYPES))
        if answer.status_code == 404 and optional:
            return None
        body = self._body(answer, MAX_MANIFEST_BYTES, "manifest")
        if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(body).hexdigest() != reference:
            raise ReleaseUnverifiable("a manifest does not match its digest")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise ReleaseUnverifiable("the registry answered a malformed manifest") from None
        if not isinstance(manifest, dict):
            raise ReleaseUnverifiable("the registry answered a malformed manifest")
        return manifest

    def _blob(self, base: str, name: str, descriptor: dict[str, Any]) -> bytes:
        digest, size = descriptor.get("digest"), descriptor.get("size")
        if not isinstance(digest, str) or not digest.startswith("sha256:") or type(size) is not int:
            raise ReleaseUnverifiable("a signature layer has a malformed descriptor")
        if size > MAX_BLOB_BYTES:
            raise ReleaseUnverifiable("a signature payload is larger than allowed")
        body = self._body(self._get(f"{base}/v2/{name}/blobs/{digest}", name, redirects=True), size, "blob")
        if len(body) != size or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise ReleaseUnverifiable("a signature payload does not match its digest")
        return body

    # --- HTTP, auth, limits ----------------------------------------------------------

    def _get(self, url: str, name: str, *, accept: str = "*/*", redirects: bool = False) -> requests.Response:
        registry = urlsplit(url).netloc
        headers = {"Accept": accept, **self._auth(registry, f"repository:{name}:pull")}
        answer = self._send(url, headers, redirects)
        if answer.status_code == 401:
            challenge = answer.headers.get("WWW-Authenticate", "")
            answer.close()
            headers["Authorization"] = self._token(registry, challenge, f"repository:{name}:pull")
            answer = self._send(url, headers, redirects)
        if answer.status_code >= 500 or answer.status_code in (401, 403, 429):
            answer.close()
            raise ReleaseUnverifiable(f"the registry answered {answer.status_code}")
        return answer

    def _send(self, url: str, headers: dict[str, str], redirects: bool) -> requests.Response:
        self.calls += 1
        try:
            return self._http.get(
                url, headers=headers, timeout=self._timeout, stream=True, allow_redirects=redirects
            )
        except requests.RequestException as exc:
            raise ReleaseUnverifiable("the registry is unreachable") from exc

    def _auth(self, registry: str, scope: str) -> dict[str, str]:
        host = urlsplit("//" + registry).hostname or ""
        if self._ecr_token is not None and _ECR_HOST.match(host):
            return {"Authorization": f"Basic {self._ecr_token(host)}"}
        with self._lock:
            cached = self._tokens.get((registry, scope))
        if cached and cached[1] > time.monotonic():
            return {"Authorization": f"Bearer {cached[0]}"}
        return {}

    def _token(self, registry: str, challenge: str, scope: str) -> str:
        """The registry token flow (distribution "token authentication"), anonymous pull."""
        if not challenge.lower().startswith("bearer "):
            raise ReleaseUnverifiable("the registry asks for credentials the Signer does not have")
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm", "")
        realm_host = urlsplit(realm).netloc
        realm_scheme = urlsplit(realm).scheme
        loopback = (urlsplit(realm).hostname or "") in _LOOPBACK
        if realm_host != registry and realm_host not in self._allow:
            raise ReleaseUnverifiable("the registry's token realm is not allow-listed")
        if realm_scheme != "https" and not (self._insecure_loopback and loopback):
            raise ReleaseUnverifiable("the registry's token realm is not HTTPS")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        self.calls += 1
        try:
            answer = self._http.get(realm, params=query, timeout=self._timeout, allow_redirects=False)
            token_answer = answer.json() if answer.status_code == 200 else None
        except (requests.RequestException, ValueError) as exc:
            raise ReleaseUnverifiable("the registry's token service failed") from exc
        token = (token_answer or {}).get("token") or (token_answer or {}).get("access_token")
        if not isinstance(token, str) or not token:
            raise ReleaseUnverifiable("the registry's token service answered no token")
        lifetime = token_answer.get("expires_in", 60) if isinstance(token_answer, dict) else 60
        with self._lock:
            self._tokens[(registry, scope)] = (token, time.monotonic() + max(0, int(lifetime) - 10))
        return f"Bearer {token}"

    @staticmethod
    def _body(answer: requests.Response, limit: int, what: str) -> bytes:
        if answer.status_code != 200:
            answer.close()
            raise ReleaseUnverifiable(f"the registry answered {answer.status_code} for a {what}")
        chunks, size = [], 0
        try:
            for chunk in answer.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise ReleaseUnverifiable(f"a {what} is larger than allowed")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise ReleaseUnverifiable(f"the registry failed while sending a {what}") from exc
        finally:
            answer.close()
        return b"".join(chunks)

    def _json(self, answer: requests.Response, what: str) -> dict[str, Any]:
        try:
            value = json.loads(self._body(answer, MAX_MANIFEST_BYTES, what))
        except ValueError:
            raise ReleaseUnverifiable(f"the registry answered malformed {what}") from None
        if not isinstance(value, dict):
            raise ReleaseUnverifiable(f"the registry answered malformed {what}")
        return value


class EcrAuthorization:
    """ECR registry credentials (``GetAuthorizationToken``), refreshed an hour before they expire."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    def __call__(self, host: str) -> str:
        with self._lock:
            if self._token is None or self._token[1] <= time.time():
                try:
                    data = self._client.get_authorization_token()["authorizationData"][0]
                except Exception as exc:  # botocore errors of any kind: the registry is unusable
                    raise ReleaseUnverifiable("ECR credentials are unavailable") from exc
                expires = data["expiresAt"].timestamp() - 3600 if "expiresAt" in data else time.time() + 3600
                self._token = (str(data["authorizationToken"]), expires)
            return self._token[0]
