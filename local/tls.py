"""HTTPS servers on loopback that require a client certificate (mutual TLS)."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from local.pki import DevPki, Issued


def server_context(pki: DevPki, identity: Issued, *, require_client_cert: bool = True) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(identity.cert, identity.key)
    context.load_verify_locations(pki.ca.cert)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def peer_certificate_pem(handler: BaseHTTPRequestHandler) -> str | None:
    der = handler.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    if not der:
        return None
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")


class MutualTlsServer(ThreadingHTTPServer):
    """A threading HTTPS server; the TLS handshake runs in the request thread, not the acceptor."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.context = context

    def finish_request(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # refused handshake (e.g. no client certificate): nothing to answer
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True)
        thread.start()
        return thread


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler answering JSON (the Authority's and Licensing's stand-ins)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms delayed-ACK stalls

    def log_message(self, *args: Any) -> None:  # keep the console for the gateway
        pass

    def send_json(
        self, status: int, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)).decode())
