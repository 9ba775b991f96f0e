"""A scripted HTTP server on 127.0.0.1 for dependencies that must misbehave on cue (a JWKS endpoint,
Licensing's introspection): each path answers what the test sets, and every request is recorded.

It speaks real HTTP/1.1 over a socket, so the Signer's adapters run their whole client path
(connection, status, headers, body limits, timeouts) against it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Scripted:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    #: Seconds to wait before answering (longer than the client's timeout: a timeout).
    delay: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout, a test's end) hangs up: expected here, not worth a
        # traceback in the test log; anything else is a bug of this double and is printed.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ScriptedServer:
    def __init__(self) -> None:
        self.answers: dict[str, Scripted] = {}
        self.requests: list[tuple[str, str, bytes]] = []
        self._stop = threading.Event()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                double.requests.append((self.command, self.path, self.rfile.read(length)))
                scripted = double.answers.get(self.path.split("?", 1)[0], Scripted(404, b"{}"))
                if scripted.delay and double._stop.wait(scripted.delay):
                    return
                self.send_response(scripted.status)
                for name, value in scripted.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(scripted.body)))
                self.end_headers()
                self.wfile.write(scripted.body)

            do_GET = do_POST = _answer

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def answer(self, path: str, status: int = 200, body: bytes | str = b"{}", **options: Any) -> None:
        self.answers[path] = Scripted(status, body.encode() if isinstance(body, str) else body, **options)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        time.sleep(0)


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()
