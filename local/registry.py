"""A small in-process OCI registry (distribution spec v1.1) on 127.0.0.1 over plain HTTP or HTTPS.

It stands in for a registry WITH the Referrers API, which Debian's docker-registry 2.8 lacks
(spec §10): the tests and the local stack push releases to it and the Signer reads them back.
Storage is in memory; blobs and manifests are kept per repository, as the spec scopes them.

Only what the Signer and its tests need is served (spec "Endpoints" table): end-1 ``/v2/``,
end-2 blobs, end-3/7 manifests, end-4a/4b/5/6/11 uploads (POST + PUT, single POST, PATCH
chunks, cross-repository mount), end-8a/8b tags, end-12a/12b referrers — plus the anonymous
Bearer token flow of the Docker token specification. Faults (a status, a delay, tampered bytes, a malformed
referrers answer, any canned answer for a path) are attributes that tests set on a running instance.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import socket
import ssl
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
TOKEN_SERVICE = "oci-test"

# Spec "Pulling manifests": the grammar of <name>, of a tag and of a digest.
NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")

_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("uploads", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<session>[^/]*)")),
    ("blobs", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("manifests", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
]
_ERROR_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 429: "TOOMANYREQUESTS"}


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest string of ``data`` (``<algorithm>:<hex>``)."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class RegistryError(Exception):
    """An OCI error answer: the status and one entry of the ``errors`` body (spec "Error Codes")."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class StoredManifest:
    data: bytes
    media_type: str
    digest: str
    document: dict[str, Any]

    def referrer_descriptor(self) -> dict[str, Any]:
        """Spec end-12a: mediaType, digest, size, artifactType (else the config's type), annotations."""
        descriptor: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        artifact_type = self.document.get("artifactType")
        if not artifact_type and self.media_type in IMAGE_MANIFEST_TYPES:
            artifact_type = (self.document.get("config") or {}).get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if self.document.get("annotations"):
            descriptor["annotations"] = self.document["annotations"]
        return descriptor


@dataclass
class _Repository:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, StoredManifest] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    referrers: dict[str, set[str]] = field(default_factory=dict)  # subject digest → referrer digests


class OciRegistry:
    """An OCI distribution 1.1 registry in a daemon thread; ``start()`` gives its base URL.

    ``referrers_api=False`` answers the referrers route with distribution 2.8's plain 404;
    ``page_size`` paginates referrers; ``auth="token"`` demands anonymous Bearer tokens from
    ``/token``; ``start(tls=context)`` serves HTTPS. Fault injection, read on every ``/v2/``
    request: ``fail_status``, ``delay_seconds``, ``tampered_blobs`` (digest → bytes served
    instead, for blobs and manifests), ``malformed_referrers``. ``overrides`` (path without
    query → (status, headers, body)) answers any path, before every other fault: a ``/v2/``
    path after the registry's own token check (a hostile registry still hands out tokens),
    any other one (``/token``, blob storage a redirect points to) as it is. ``requests`` logs
    (method, path without query) of every request, ``/token`` included, and
    ``request_headers`` the headers of each, in the same order.
    """

    def __init__(
        self,
        referrers_api: bool = True,
        page_size: int | None = None,
        auth: Literal["none", "token"] = "none",
    ) -> None:
        self.referrers_api = referrers_api
        self.page_size = page_size
        self.auth = auth
        self.fail_status: int | None = None
        self.delay_seconds: float = 0.0
        self.tampered_blobs: dict[str, bytes] = {}
        self.malformed_referrers = False
        self.overrides: dict[str, tuple[int, Mapping[str, str], bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.request_headers: list[dict[str, str]] = []
        self._lock = threading.RLock()
        self._repositories: dict[str, _Repository] = {}
        self._uploads: dict[str, tuple[str, bytearray]] = {}
        self._tokens: dict[str, frozenset[tuple[str, str]]] = {}  # token → {(repository, action)}
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> str:
        """Listen on 127.0.0.1 (``port=0``: a free one) and return ``http://127.0.0.1:<port>``,
        or ``https://`` when ``tls`` (a server context) is given."""
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", port), _Handler, self, tls)
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="OciRegistry", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving, cut open keep-alive connections and wake delayed requests."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OciRegistry:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- storage ---------------------------------------------------------------------------------

    def _repository(self, name: str, *, create: bool = False) -> _Repository | None:
        if not NAME_RE.fullmatch(name):
            raise RegistryError(400, "NAME_INVALID", f"invalid repository name {name!r}")
        with self._lock:
            if create:
                return self._repositories.setdefault(name, _Repository())
            return self._repositories.get(name)

    def put_blob(self, name: str, data: bytes, expected_digest: str) -> str:
        """Store a blob whose bytes must hash to ``expected_digest`` (spec end-6: DIGEST_INVALID)."""
        if not DIGEST_RE.fullmatch(expected_digest):
            raise RegistryError(400, "DIGEST_INVALID", f"invalid digest {expected_digest!r}")
        if digest_of(data, expected_digest.split(":", 1)[0]) != expected_digest:
            raise RegistryError(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        repository = self._repository(name, create=True)
        assert repository is not None
        with self._lock:
            repository.blobs[expected_digest] = data
        return expected_digest

    def blob(self, name: str, digest: str) -> bytes:
        """The bytes served for a blob (tampered ones when a test set them)."""
        repository = self._repository(name)
        with self._lock:
            data = repository.blobs.get(digest) if repository else None
        if data is None:
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
        return self.tampered_blobs.get(digest, data)

    def put_manifest(
        self, name: str, reference: str, data: bytes, content_type: str | None
    ) -> StoredManifest:
        """Store the exact bytes (spec end-7); a push by digest must match, a subject is indexed."""
        try:
            document = json.loads(data)
        except ValueError as error:
            raise RegistryError(400, "MANIFEST_INVALID", f"manifest is not JSON: {error}") from None
        if not isinstance(document, dict):
            raise RegistryError(400, "MANIFEST_INVALID", "manifest is not a JSON object")
        media_type = (content_type or "").split(";", 1)[0].strip() or document.get("mediaType")
        if not media_type or document.get("mediaType", media_type) != media_type:
            raise RegistryError(400, "MANIFEST_INVALID", "Content-Type and mediaType disagree or are missing")
        algorithm = reference.split(":", 1)[0] if DIGEST_RE.fullmatch(reference) else "sha256"
        digest = digest_of(data, algorithm)
        if ":" in reference and reference != digest:
            raise RegistryError(400, "DIGEST_INVALID", f"manifest digest is {digest}, not {reference}")
        if ":" not in reference and not TAG_RE.fullmatch(reference):
            raise RegistryError(400, "TAG_INVALID", f"invalid tag {reference!r}")
        repository = self._repository(name, create=True)
        assert repository is not None
        stored = StoredManifest(data, media_type, digest, document)
        with self._lock:
            self._check_references(repository, stored)
            repository.manifests[digest] = stored
            if ":" not in reference:
                repository.tags[reference] = digest
            subject = document.get("subject")
            if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
                repository.referrers.setdefault(subject["digest"], set()).add(digest)
        return stored

    @staticmethod
    def _check_references(repository: _Repository, stored: StoredManifest) -> None:
        """Like distribution: an image's blobs and an index's manifests must already be present."""
        if stored.media_type in IMAGE_MANIFEST_TYPES:
            wanted = [stored.document.get("config") or {}, *(stored.document.get("layers") or [])]
            present: Mapping[str, object] = repository.blobs
        elif stored.media_type in INDEX_TYPES:
            wanted, present = list(stored.document.get("manifests") or []), repository.manifests
        else:
            return
        for descriptor in wanted:
            if descriptor.get("digest") not in present:
                raise RegistryError(
                    400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {descriptor.get('digest')}"
                )

    def manifest(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names, in this repository (spec end-3)."""
        repository = self._repository(name)
        with self._lock:
            digest = repository.tags.get(reference, reference) if repository else reference
            stored = repository.manifests.get(digest) if repository else None
        if stored is None:
            raise RegistryError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {reference}")
        return stored

    def tags(self, name: str) -> list[str]:
        repository = self._repository(name)
        if repository is None:
            raise RegistryError(404, "NAME_UNKNOWN", f"repository name not known to registry: {name}")
        with self._lock:
            return sorted(repository.tags)

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``subject``, ordered by digest."""
        repository = self._repository(name)
        if repository is None:
            return []
        with self._lock:
            digests = sorted(repository.referrers.get(subject, ()))
            return [repository.manifests[digest].referrer_descriptor() for digest in digests]

    # -- tokens (Docker token specification, anonymous pull/push) --------------------------------

    def issue_token(self, service: str | None, scopes: list[str]) -> str:
        if service != TOKEN_SERVICE:
            raise RegistryError(400, "UNSUPPORTED", f"unknown service {service!r}")
        grants: set[tuple[str, str]] = set()
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repository, _, actions = rest.rpartition(":")
            if kind != "repository" or not repository:
                raise RegistryError(400, "UNSUPPORTED", f"invalid scope {scope!r}")
            grants.update((repository, action) for action in actions.split(",") if action in {"pull", "push"})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = frozenset(grants)
        return token

    def _authorize(self, authorization: str | None, name: str | None, method: str) -> None:
        actions = ("pull",) if method in {"GET", "HEAD"} else ("pull", "push")
        challenge = f'Bearer realm="{self.base_url}/token",service="{TOKEN_SERVICE}"'
        if name is not None:
            challenge += f',scope="repository:{name}:{",".join(actions)}"'
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            grants = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grants is None:
            raise RegistryError(
                401, "UNAUTHORIZED", "authentication required", headers={"WWW-Authenticate": challenge}
            )
        if name is not None and not all((name, action) in grants for action in actions):
            raise RegistryError(
                401,
                "UNAUTHORIZED",
                "insufficient scope",
                headers={"WWW-Authenticate": challenge + ',error="insufficient_scope"'},
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[_Handler],
        registry: OciRegistry,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.registry = registry
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, the handshake runs in the request's thread; a refused one answers nothing."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)  # a client that never finishes its handshake ties up one thread, briefly
        try:
            connection = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        connection.settimeout(None)
        try:
            super().finish_request(connection, client_address)
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeouts, stop()) is expected; anything else is a bug worth printing.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the registry is background scenery for tests and the local stack."""

    def setup(self) -> None:
        super().setup()
        with self.server.registry._lock:
            self.server.registry._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.registry._lock:
            self.server.registry._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing --------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _chunks(self) -> Iterator[bytes]:
        while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
            yield self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, status: int, document: Any, *, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), content_type="application/json", headers=headers)

    def _send_error(self, error: RegistryError) -> None:
        body = {"errors": [{"code": error.code, "message": error.message, "detail": {}}]}
        self._send_json(error.status, body, headers=error.headers)

    def _dispatch(self, method: str) -> None:
        registry = self.server.registry
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self._read_body()
        with registry._lock:
            registry.requests.append((method, url.path))
            registry.request_headers.append(dict(self.headers.items()))
            override = registry.overrides.get(url.path)
        if registry._stopping.is_set():
            self.close_connection = True
            return
        try:
            if override is not None:
                if registry.auth == "token" and (url.path == "/v2" or url.path.startswith("/v2/")):
                    registry._authorize(self.headers.get("Authorization"), _name_of(url.path), method)
                status, headers, canned = override
                self._send(status, canned, headers=headers)
                return
            if url.path == "/token" and method == "GET":
                token = registry.issue_token(_one(query, "service"), query.get("scope", []))
                now = datetime.now(UTC).isoformat()
                self._send_json(
                    200, {"token": token, "access_token": token, "expires_in": 300, "issued_at": now}
                )
                return
            if not (url.path == "/v2" or url.path.startswith("/v2/")):
                raise RegistryError(404, "NOT_FOUND", "not a distribution API path")
            if registry.delay_seconds and registry._stopping.wait(registry.delay_seconds):
                self.close_connection = True  # stopped while delaying: hang up without answering
                return
            if registry.fail_status is not None:
                status = registry.fail_status
                raise RegistryError(status, _ERROR_CODES.get(status, "UNAVAILABLE"), f"injected {status}")
            self._route(method, url.path, query, body)
        except RegistryError as error:
            self._send_error(error)
        except Exception:
            self._send_error(RegistryError(500, "UNKNOWN", "internal error"))
            raise  # printed by _Server.handle_error: a bug in this stand-in, not a client's fault

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        registry = self.server.registry
        if path in {"/v2", "/v2/"}:
            if registry.auth == "token":
                registry._authorize(self.headers.get("Authorization"), None, method)
            self._send_json(200, {})
            return
        for route, pattern in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            name = match["name"]
            if route == "referrers" and not registry.referrers_api:
                # distribution 2.8 has no such route: its router answers a plain-text 404.
                self._send(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")
                return
            if registry.auth == "token":
                registry._authorize(self.headers.get("Authorization"), name, method)
            getattr(self, f"_{route}")(method, name, match, query, body)
            return
        raise RegistryError(404, "NOT_FOUND", f"no route for {path}")

    # -- endpoints -------------------------------------------------------------------------------

    def _manifests(
        self, method: str, name: str, match: re.Match[str], query: dict[str, list[str]], body: bytes
    ) -> None:
        registry = self.server.registry
        reference = match["reference"]
        if method in {"GET", "HEAD"}:
            stored = registry.manifest(name, reference)
            data = registry.tampered_blobs.get(stored.digest, stored.data)
            headers = {"Docker-Content-Digest": stored.digest}
            self._send(200, data, content_type=stored.media_type, headers=headers)
        elif method == "PUT":
            stored = registry.put_manifest(name, reference, body, self.headers.get("Content-Type"))
            headers = {
                "Location": f"/v2/{name}/manifests/{stored.digest}",
                "Docker-Content-Digest": stored.digest,
            }
            subject = stored.document.get("subject")
            if registry.referrers_api and isinstance(subject, dict) and "digest" in subject:
                headers["OCI-Subject"] = subject["digest"]
            self._send(201, headers=headers)
        else:
            raise RegistryError(405, "UNSUPPORTED", f"{method} on manifests is not supported")

    def _blobs(
        self, method: str, name: str, match: re.Match[str], query: dict[str, list[str]], body: bytes
    ) -> None:
        if method not in {"GET", "HEAD"}:
            raise RegistryError(405, "UNSUPPORTED", f"{method} on blobs is not supported")
        digest = match["digest"]
        data = self.server.registry.blob(name, digest)
        headers = {"Docker-Content-Digest": digest}
        self._send(200, data, content_type="application/octet-stream", headers=headers)

    def _uploads(
        self, method: str, name: str, match: re.Match[str], query: dict[str, list[str]], body: bytes
    ) -> None:
        registry = self.server.registry
        session, digest = match["session"], _one(query, "digest")
        if method == "POST" and not session:
            if digest is not None:  # end-4b: single-request monolithic upload
                self._blob_created(name, registry.put_blob(name, body, digest))
                return
            mount, source = _one(query, "mount"), _one(query, "from")
            if mount and source:  # end-11: cross-repository mount, when the source has the blob
                try:
                    self._blob_created(name, registry.put_blob(name, registry.blob(source, mount), mount))
                    return
                except RegistryError:
                    pass
            registry._repository(name)  # validates the name
            session = secrets.token_hex(16)
            with registry._lock:
                registry._uploads[session] = (name, bytearray(body))
            self._upload_accepted(name, session)
            return
        with registry._lock:
            upload = registry._uploads.get(session)
        if upload is None or upload[0] != name:
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if method == "PATCH":  # end-5: one more chunk
            with registry._lock:
                upload[1].extend(body)
            self._upload_accepted(name, session)
        elif method == "PUT":  # end-6: close the upload, verifying the digest
            if digest is None:
                raise RegistryError(400, "DIGEST_INVALID", "the digest query parameter is required")
            with registry._lock:
                data = bytes(upload[1] + body)
            self._blob_created(name, registry.put_blob(name, data, digest))
            with registry._lock:
                registry._uploads.pop(session, None)
        else:
            raise RegistryError(405, "UNSUPPORTED", f"{method} on uploads is not supported")

    def _upload_accepted(self, name: str, session: str) -> None:
        with self.server.registry._lock:
            size = len(self.server.registry._uploads[session][1])
        headers = {
            "Location": f"/v2/{name}/blobs/uploads/{session}",
            "Docker-Upload-UUID": session,
            "Range": f"0-{max(size - 1, 0)}",
        }
        self._send(202, headers=headers)

    def _blob_created(self, name: str, digest: str) -> None:
        self._send(201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    def _tags(
        self, method: str, name: str, match: re.Match[str], query: dict[str, list[str]], body: bytes
    ) -> None:
        tags = self.server.registry.tags(name)
        last, limit = _one(query, "last"), _one(query, "n")
        if last:
            tags = [tag for tag in tags if tag > last]
        headers: dict[str, str] = {}
        if limit is not None and len(tags) > int(limit):
            tags = tags[: int(limit)]
            next_query = urlencode({"n": limit, "last": tags[-1]})
            headers["Link"] = f'</v2/{name}/tags/list?{next_query}>; rel="next"'
        self._send_json(200, {"name": name, "tags": tags}, headers=headers)

    def _referrers(
        self, method: str, name: str, match: re.Match[str], query: dict[str, list[str]], body: bytes
    ) -> None:
        registry = self.server.registry
        subject = match["digest"]
        if not DIGEST_RE.fullmatch(subject):
            raise RegistryError(400, "DIGEST_INVALID", f"invalid digest {subject!r}")
        if registry.malformed_referrers:
            self._send(200, b'{"schemaVersion": 2, "manifests": [', content_type=OCI_INDEX)
            return
        descriptors = registry.referrers(name, subject)
        headers: dict[str, str] = {}
        artifact_type = _one(query, "artifactType")
        if artifact_type:
            descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
            headers["OCI-Filters-Applied"] = "artifactType"
        last = _one(query, "last")
        if last:
            descriptors = [d for d in descriptors if d["digest"] > last]
        sizes = [int(n) for n in (registry.page_size, _one(query, "n")) if n]
        page_size = min(sizes) if sizes else None
        if page_size and len(descriptors) > page_size:
            descriptors = descriptors[:page_size]
            next_query = {"n": page_size, "last": descriptors[-1]["digest"]}
            if artifact_type:
                next_query["artifactType"] = artifact_type
            headers["Link"] = f'</v2/{name}/referrers/{subject}?{urlencode(next_query)}>; rel="next"'
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        self._send(200, json.dumps(index).encode(), content_type=OCI_INDEX, headers=headers)


def _name_of(path: str) -> str | None:
    """The repository a ``/v2/`` path names (None for ``/v2/`` itself or an unknown route)."""
    for _, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return match["name"]
    return None


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None
