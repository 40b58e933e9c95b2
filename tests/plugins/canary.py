"""Pytest fixtures: ``canary``, an HTTP server on 127.0.0.1 that records every request it gets
(security probes assert that none reached it), and the ``Canary`` class for variants
(e.g. one that redirects every request elsewhere)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing."""

    def log_message(self, *args: object) -> None:
        pass


class LocalHTTPServer:
    """An HTTP server on a free port of 127.0.0.1, answering with ``handler`` in threads."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Canary(LocalHTTPServer):
    """An HTTP server on 127.0.0.1 that records requests; optionally redirects them."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.requests: list[str] = []
        canary = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                canary.requests.append(self.path)
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

        super().__init__(Handler)


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    """A recording HTTP server for one test module."""
    server = Canary()
    yield server
    server.close()
