"""An OCI distribution client for release verification (OCI distribution spec v1.1).

Collects the cosign signatures of an image digest: the Referrers API
(``GET /v2/<name>/referrers/<digest>``, paginated by ``Link``), and on 404 the tag-schema
fallback (cosign's ``sha256-<hex>.sig`` and the ``sha256-<hex>`` referrers index). Every
manifest fetched by digest and every blob is checked against its digest and size.
HTTPS to allow-listed registries only (plain HTTP to loopback only when explicitly allowed,
for tests), trusting the public roots plus ``RegistryCaBundle``, never the process
environment; the registry token flow (``WWW-Authenticate: Bearer realm=…``) and ECR
``GetAuthorizationToken``.

What a hostile or broken registry can make it do is bounded: redirects are followed only to
HTTPS hosts that resolve to public addresses (or to an allow-listed registry), and never with
credentials; a pagination ``Link`` keeps the registry's scheme and host; one verification
reads at most ``MAX_VERIFICATION_BYTES`` in ``MAX_VERIFICATION_REQUESTS`` requests, each blob
once. Any failure — network, timeout, 5xx, a malformed answer of any shape — raises
ReleaseUnverifiable; nothing here decides trust.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
import urllib3

from stellaops_signer.domain.errors import ReleaseUnverifiable, SignerError
from stellaops_signer.domain.release import (
    COSIGN_ARTIFACT_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    CandidateSignature,
)

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from mypy_boto3_ecr.client import ECRClient

    from stellaops_signer.domain.jose import JsonObject
    from stellaops_signer.ports import Clock

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
#: One verification's budget (decision 0011): a simple-signing payload is ~0.5 KB, a signature
#: manifest ~1 KB, a referrers page of 100 descriptors ~40 KB. 2 MiB holds ten full pages and
#: every signature many times over, and bounds what a hostile registry costs a Lambda.
MAX_VERIFICATION_BYTES = 2 * 1024 * 1024
MAX_VERIFICATION_REQUESTS = 64
#: And in this many seconds in all: a registry that answers a byte at a time cannot hold a signing
#: until the function times out (its timeouts bound each socket read, not the whole).
MAX_VERIFICATION_SECONDS = 10.0
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_BLOB_BYTES = 64 * 1024
MAX_REFERRER_PAGES = 10
MAX_SIGNATURE_MANIFESTS = 16
MAX_LAYERS = 16
MAX_REDIRECTS = 3
TIMEOUT = (3.05, 5.0)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_REDIRECTS = {301, 302, 303, 307, 308}
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: IPv4-mapped (RFC 4291), IPv4-translated (RFC 2765) and NAT64 well-known (RFC 6052) prefixes.
_IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
#: IPv4-compatible (RFC 4291 §2.5.5.1, deprecated) and local-use NAT64 (RFC 8215).
_NEVER_PUBLIC_V6 = tuple(ipaddress.IPv6Network(prefix) for prefix in ("::/96", "64:ff9b:1::/48"))

Resolver = Callable[[str, int], list[str]]


def split_repository(reference: str) -> tuple[str, str]:
    """``registry.example/stellaops/scanner`` → (``registry.example``, ``stellaops/scanner``)."""
    registry, _, name = reference.partition("/")
    if not registry or not name:
        raise ValueError(f"{reference!r} is not <registry>/<repository>")
    return registry, name


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local (the 169.254.169.254 metadata service), shared,
    reserved and unique-local (fd00:ec2::254) addresses, also behind an IPv6 form that carries
    an IPv4 address: mapped, translated, NAT64 (through a VPC's NAT64 gateway ``64:ff9b::a00:7``
    is 10.0.0.7) and 6to4. IPv4-compatible and local-use NAT64 addresses are never public
    (obsolete, or mapped as the site decides)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _NEVER_PUBLIC_V6):
            return False
        if any(ip in network for network in _IPV4_IN_LAST_32_BITS):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    return bool(ip.is_global) and not ip.is_multicast


@dataclass
class _Budget:
    """What one verification may still read: bytes, requests, and the blobs it already has."""

    bytes_left: int = MAX_VERIFICATION_BYTES
    requests_left: int = MAX_VERIFICATION_REQUESTS
    blobs: dict[str, bytes] = field(default_factory=dict)
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_VERIFICATION_SECONDS)

    def request(self) -> None:
        self.requests_left -= 1
        if self.requests_left < 0:
            raise ReleaseUnverifiable("the registry needs more requests than one verification may make")
        self.in_time()

    def take(self, size: int) -> None:
        self.bytes_left -= size
        if self.bytes_left < 0:
            raise ReleaseUnverifiable("the registry sends more than one verification may read")
        self.in_time()

    def in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ReleaseUnverifiable("the registry is too slow for one verification")

    def timeout(self, configured: tuple[float, float]) -> tuple[float, float]:
        """The per-request timeouts, never beyond what is left of the verification's time."""
        left = max(0.05, self.deadline - time.monotonic())
        return (min(configured[0], left), min(configured[1], left))


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
        ca_bundle: str | None = None,
        resolve: Resolver = resolve_host,
    ) -> None:
        self._allow = frozenset(allow_list)
        self._insecure_loopback = insecure_loopback
        self._http = session or requests.Session()
        self._http.trust_env = False  # no proxies or CA bundles from the environment
        if ca_bundle:
            self._http.verify = ca_bundle  # the public roots plus RegistryCaBundle (wiring)
        self._ecr_token = ecr_token
        self._timeout = timeout
        self._resolve = resolve
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        #: Requests made to registries, for tests and benchmarks.
        self.calls = 0

    # --- what the verifier asks --------------------------------------------------------

    def collect(self, repository: str, digest: str) -> list[CandidateSignature]:
        """Every simple-signing signature attached to ``digest`` in ``repository``.

        Raises ReleaseUnverifiable for whatever keeps the registry from answering, whatever shape
        its answer has: the translation to the domain's error happens here, once.
        """
        try:
            return self._collect(repository, digest, _Budget())
        except SignerError:
            raise
        except Exception as exc:  # a shape not foreseen below is still the registry's failure
            raise ReleaseUnverifiable("the registry answered something malformed") from exc

    def _collect(self, repository: str, digest: str, budget: _Budget) -> list[CandidateSignature]:
        registry, name = split_repository(repository)
        base = self._base(registry)
        tag = "sha256-" + digest.removeprefix("sha256:")
        descriptors = self._referrers(base, name, digest, budget)
        source = "referrers"
        if descriptors is None:
            index = self._manifest(base, name, tag, budget, optional=True)
            descriptors = _descriptors(index, "manifests") if index is not None else []
            source = "tag-schema"
        candidates: list[CandidateSignature] = []
        signature_manifests = [d for d in descriptors if d.get("artifactType") == COSIGN_ARTIFACT_TYPE]
        for descriptor in signature_manifests[:MAX_SIGNATURE_MANIFESTS]:
            reference = _digest_of(descriptor)
            candidates += self._signatures(base, name, repository, reference, source, budget)
        if not candidates:  # cosign's own storage: the .sig tag, whatever else the registry offers
            candidates += self._signatures(
                base, name, repository, tag + ".sig", "tag-schema", budget, optional=True
            )
        return candidates

    # --- the protocol ------------------------------------------------------------------

    def _scheme(self, host: str) -> str:
        return "http" if self._insecure_loopback and host in _LOOPBACK else "https"

    def _base(self, registry: str) -> str:
        if registry not in self._allow:
            raise ReleaseUnverifiable(f"registry {registry} is not allow-listed")
        return f"{self._scheme(urlsplit('//' + registry).hostname or '')}://{registry}"

    def _referrers(self, base: str, name: str, digest: str, budget: _Budget) -> list[JsonObject] | None:
        """The referrers' descriptors, following ``Link`` pages; None when the API is missing (404)."""
        url: str | None = (
            f"{base}/v2/{name}/referrers/{digest}?artifactType={quote(COSIGN_ARTIFACT_TYPE, safe='')}"
        )
        descriptors: list[JsonObject] = []
        for page in range(MAX_REFERRER_PAGES):
            assert url is not None
            answer = self._get(url, name, budget, accept="application/vnd.oci.image.index.v1+json")
            if answer.status_code == 404 and page == 0:
                answer.close()
                return None
            next_url = self._next_page(base, answer)
            descriptors += _descriptors(self._json(answer, "referrers", budget), "manifests")
            url = next_url
            if url is None:
                return descriptors
        raise ReleaseUnverifiable("the referrers listing has too many pages")

    @staticmethod
    def _next_page(base: str, answer: requests.Response) -> str | None:
        match = _LINK_NEXT.search(answer.headers.get("Link", ""))
        if match is None:
            return None
        url: str = urljoin(base + "/", match.group(1))
        target, origin = urlsplit(url), urlsplit(base)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            raise ReleaseUnverifiable("a referrers page points to another scheme or host")
        return url

    def _signatures(
        self,
        base: str,
        name: str,
        repository: str,
        reference: str,
        source: str,
        budget: _Budget,
        *,
        optional: bool = False,
    ) -> list[CandidateSignature]:
        manifest = self._manifest(base, name, reference, budget, optional=optional)
        if manifest is None:
            return []
        found = []
        for layer in _descriptors(manifest, "layers")[:MAX_LAYERS]:
            if layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
                continue
            annotations = layer.get("annotations") or {}
            if not isinstance(annotations, dict):
                raise ReleaseUnverifiable("a signature layer has malformed annotations")
            signature = annotations.get(SIGNATURE_ANNOTATION)
            if not isinstance(signature, str):
                continue
            payload = self._blob(base, name, layer, budget)
            found.append(CandidateSignature(repository, payload, signature, source))
        return found

    def _manifest(
        self, base: str, name: str, reference: str, budget: _Budget, *, optional: bool = False
    ) -> JsonObject | None:
        answer = self._get(
            f"{base}/v2/{name}/manifests/{reference}", name, budget, accept=", ".join(MANIFEST_TYPES)
        )
        if answer.status_code == 404 and optional:
            answer.close()
            return None
        body = self._body(answer, MAX_MANIFEST_BYTES, "manifest", budget)
        if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(body).hexdigest() != reference:
            raise ReleaseUnverifiable("a manifest does not match its digest")
        return _object(body, "manifest")

    def _blob(self, base: str, name: str, descriptor: JsonObject, budget: _Budget) -> bytes:
        digest, size = _digest_of(descriptor), descriptor.get("size")
        if type(size) is not int or size < 0:
            raise ReleaseUnverifiable("a signature layer has a malformed descriptor")
        if size > MAX_BLOB_BYTES:
            raise ReleaseUnverifiable("a signature payload is larger than allowed")
        if digest in budget.blobs:  # each blob once per verification, however often it is listed
            return budget.blobs[digest]
        answer = self._get(f"{base}/v2/{name}/blobs/{digest}", name, budget, redirects=True)
        body = self._body(answer, size, "blob", budget)
        if len(body) != size or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise ReleaseUnverifiable("a signature payload does not match its digest")
        budget.blobs[digest] = body
        return body

    # --- HTTP, auth, redirects, limits ---------------------------------------------------

    def _get(
        self, url: str, name: str, budget: _Budget, *, accept: str = "*/*", redirects: bool = False
    ) -> requests.Response:
        registry = urlsplit(url).netloc
        headers = {"Accept": accept, **self._auth(registry, f"repository:{name}:pull")}
        answer = self._send(url, headers, budget)
        if answer.status_code == 401:
            challenge = answer.headers.get("WWW-Authenticate", "")
            answer.close()
            headers["Authorization"] = self._token(registry, challenge, f"repository:{name}:pull", budget)
            answer = self._send(url, headers, budget)
        for _ in range(MAX_REDIRECTS):
            if not redirects or answer.status_code not in _REDIRECTS:
                break
            target = urljoin(url, answer.headers.get("Location", ""))
            answer.close()
            self._check_redirect(target)
            url = target
            answer = self._send(url, {"Accept": accept}, budget)  # never the registry's credentials
        if answer.status_code in _REDIRECTS:
            answer.close()
            raise ReleaseUnverifiable("the registry redirects too often, or where it must not")
        if answer.status_code >= 500 or answer.status_code in (401, 403, 429):
            answer.close()
            raise ReleaseUnverifiable(f"the registry answered {answer.status_code}")
        return answer

    def _check_redirect(self, url: str) -> None:
        """Blob storage may redirect to a CDN: only over HTTPS to a host that resolves to public
        addresses only, unless it is an allow-listed registry (whose scheme rule then applies)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.netloc in self._allow:
            if parts.scheme != self._scheme(host):
                raise ReleaseUnverifiable("a redirect changes the registry's scheme")
            return
        if parts.scheme != "https" or not host or parts.username or parts.password:
            raise ReleaseUnverifiable("the registry redirects to something other than an HTTPS host")
        try:
            addresses = self._resolve(host, parts.port or 443)
        except (OSError, UnicodeError) as exc:
            raise ReleaseUnverifiable("the registry redirects to a host that does not resolve") from exc
        if not addresses or not all(is_public_address(a) for a in addresses):
            raise ReleaseUnverifiable("the registry redirects to a loopback, private or metadata address")

    def _send(self, url: str, headers: dict[str, str], budget: _Budget) -> requests.Response:
        budget.request()
        self.calls += 1
        try:
            return self._http.get(
                url, headers=headers, timeout=self._timeout, stream=True, allow_redirects=False
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

    def _token(self, registry: str, challenge: str, scope: str, budget: _Budget) -> str:
        """The registry token flow (distribution "token authentication"), anonymous pull."""
        if not challenge.lower().startswith("bearer "):
            raise ReleaseUnverifiable("the registry asks for credentials the Signer does not have")
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = urlsplit(params.get("realm", ""))
        if realm.netloc != registry and realm.netloc not in self._allow:
            raise ReleaseUnverifiable("the registry's token realm is not allow-listed")
        if realm.scheme != self._scheme(realm.hostname or ""):
            raise ReleaseUnverifiable("the registry's token realm is not HTTPS")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        url = realm.geturl() + ("&" if realm.query else "?") + urlencode(query)
        answer = self._send(url, {"Accept": "application/json"}, budget)
        if answer.status_code != 200:
            answer.close()
            raise ReleaseUnverifiable(f"the registry's token service answered {answer.status_code}")
        token_answer = self._json(answer, "token answer", budget)
        token = token_answer.get("token") or token_answer.get("access_token")
        lifetime = token_answer.get("expires_in", 60)
        if not isinstance(token, str) or not token or " " in token:
            raise ReleaseUnverifiable("the registry's token service answered no token")
        if type(lifetime) not in (int, float) or not math.isfinite(lifetime) or lifetime < 0:
            raise ReleaseUnverifiable("the registry's token service answered a malformed expires_in")
        with self._lock:
            self._tokens[(registry, scope)] = (token, time.monotonic() + max(0.0, min(lifetime, 3600) - 10))
        return f"Bearer {token}"

    @staticmethod
    def _body(answer: requests.Response, limit: int, what: str, budget: _Budget) -> bytes:
        if answer.status_code != 200:
            answer.close()
            raise ReleaseUnverifiable(f"the registry answered {answer.status_code} for a {what}")
        chunks, size = [], 0
        try:
            # read1: whatever has arrived (one socket read), so the deadline is checked as bytes trickle
            while chunk := answer.raw.read1(65536, decode_content=True):
                size += len(chunk)
                budget.take(len(chunk))
                if size > limit:
                    raise ReleaseUnverifiable(f"a {what} is larger than allowed")
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ReleaseUnverifiable(f"the registry failed while sending a {what}") from exc
        finally:
            answer.close()
        return b"".join(chunks)

    def _json(self, answer: requests.Response, what: str, budget: _Budget) -> JsonObject:
        return _object(self._body(answer, MAX_MANIFEST_BYTES, what, budget), what)


def _object(body: bytes, what: str) -> JsonObject:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ReleaseUnverifiable(f"the registry answered a malformed {what}") from None
    if not isinstance(value, dict):
        raise ReleaseUnverifiable(f"the registry answered a malformed {what}")
    return value


def _descriptors(document: JsonObject, member: str) -> list[JsonObject]:
    """``manifests`` of an index or ``layers`` of a manifest: a list of objects, or absent."""
    value = document.get(member, [])
    if not isinstance(value, list) or not all(isinstance(d, dict) for d in value):
        raise ReleaseUnverifiable(f"the registry answered a document whose {member} is malformed")
    return value


def _digest_of(descriptor: JsonObject) -> str:
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ReleaseUnverifiable("the registry answered a descriptor without a sha256 digest")
    return digest


class EcrAuthorization:
    """ECR registry credentials (``GetAuthorizationToken``), refreshed an hour before they expire."""

    def __init__(self, client: ECRClient, clock: Clock) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    def __call__(self, host: str) -> str:
        with self._lock:
            if self._token is None or self._token[1] <= self._clock.now():
                try:
                    data = self._client.get_authorization_token()["authorizationData"][0]
                    token = data["authorizationToken"]
                    expires = (
                        data["expiresAt"].timestamp() - 3600
                        if "expiresAt" in data
                        else self._clock.now() + 3600
                    )
                except Exception as exc:  # botocore errors or answers of any shape: no credentials
                    raise ReleaseUnverifiable("ECR credentials are unavailable") from exc
                if not isinstance(token, str) or not token:
                    raise ReleaseUnverifiable("ECR credentials are unavailable")
                self._token = (token, expires)
            return self._token[0]


__all__ = [
    "MANIFEST_TYPES",
    "MAX_BLOB_BYTES",
    "MAX_LAYERS",
    "MAX_MANIFEST_BYTES",
    "MAX_REDIRECTS",
    "MAX_REFERRER_PAGES",
    "MAX_SIGNATURE_MANIFESTS",
    "MAX_VERIFICATION_BYTES",
    "MAX_VERIFICATION_REQUESTS",
    "MAX_VERIFICATION_SECONDS",
    "TIMEOUT",
    "EcrAuthorization",
    "RegistryClient",
    "Resolver",
    "is_public_address",
    "resolve_host",
    "split_repository",
]
