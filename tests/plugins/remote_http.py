"""Pytest fixtures: remote HTTP sources on 127.0.0.1.

``remote_http`` (per module) serves a folder with nginx over HTTP range requests, next to a
``Canary`` that records every request it gets and a ``SlowServer`` that answers only after
a delay. nginx's locations:

- ``/cogs/...``, ``/other/...``: the folder's files (``other`` is what tests leave outside
  the allowlist);
- ``/cogs/moved/NAME``: 302 to ``/cogs/NAME`` (a redirect that stays inside the prefix);
- ``/cogs/away/NAME``: 302 to the canary;
- ``/cogs/switch/NAME``: the file for the tile server's lookup (``Range: bytes=0-0``), a 302
  to the canary for every other request (what a server that changed its mind between the
  tile server's check and GDAL's reads answers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.canary import Canary, LocalHTTPServer, QuietHandler
from tests.plugins.nginx import NginxProcess

SERVER_CONF = """
server {
    listen 127.0.0.1:{port};
    access_log ACCESS_LOG;
    root ROOT;
    location = /nginx-health { return 200; }
    location /cogs/moved/ { rewrite ^/cogs/moved/(.*)$ /cogs/$1 redirect; }
    location /cogs/away/ { return 302 CANARY/from-nginx$uri; }
    location /cogs/switch/ {
        if ($http_range != "bytes=0-0") { return 302 CANARY/from-nginx$uri; }
        alias ROOT/cogs/;
    }
}
"""


class SlowServer(LocalHTTPServer):
    """An HTTP server on 127.0.0.1 that sleeps ``delay_s`` before answering; paths starting
    ``/get/`` answer the tile server's lookup (``Range: bytes=0-0``) at once, GDAL's reads late."""

    def __init__(self, delay_s: float) -> None:
        self.requests: list[str] = []
        slow = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                slow.requests.append(f"{self.command} {self.path} {self.headers.get('Range')}")
                lookup = self.headers.get("Range") == "bytes=0-0"
                if not (lookup and self.path.startswith("/get/")):
                    time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", '"slow"')
                self.end_headers()

            do_HEAD = do_GET

        super().__init__(Handler)


@dataclass
class RemoteHTTP:
    """The running remote endpoints and the folder nginx serves."""

    root: Path
    nginx: NginxProcess
    canary: Canary
    slow: SlowServer


@pytest.fixture(scope="module")
def remote_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteHTTP]:
    """nginx serving ``root`` (``root/cogs``, ``root/other``: empty, for tests to fill), the
    canary and a server slower than the tests' 2 s timeout."""
    base = tmp_path_factory.mktemp("remote-http")
    root = base / "www"
    for sub in ("cogs", "other"):
        (root / sub).mkdir(parents=True)
    canary = Canary()
    slow = SlowServer(delay_s=6.0)
    conf = SERVER_CONF.replace("ROOT", str(root)).replace("CANARY", canary.url)
    nginx = NginxProcess(
        base / "nginx", conf.replace("ACCESS_LOG", str(base / "nginx" / "access.log"))
    )
    result = nginx.check()
    assert result.returncode == 0, result.stderr
    nginx.start()
    yield RemoteHTTP(root, nginx, canary, slow)
    nginx.stop()
    slow.close()
    canary.close()
