"""The nginx edge cache (deploy/nginx/templates/default.conf.template) with the real nginx.

The template is rendered the way the official nginx image renders it (envsubst of the
variables that are defined), included from a test-generated main config with temporary
paths and a free port, checked with ``nginx -t`` and then run in front of the real API
(uvicorn on 127.0.0.1, the session server on the sample scene):

- the second request for a tile is an nginx cache HIT (``X-Cache-Status``);
- 20 concurrent cold requests for one tile reach the API once (``proxy_cache_lock``),
  counted with the API's own ``hndsr_http_request_duration_seconds`` and nginx's log;
- probes are never cached and ``/metrics`` is not exposed at the edge.

A second nginx in front of a tiny header-scripted HTTP server checks the parts the sample
API cannot produce on demand: ``Cache-Control: no-store`` / ``private`` are honoured,
``max-age`` sets the lifetime, and degraded tiles are never stored.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import morecantile
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.nginx import NginxProcess

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deploy" / "nginx" / "templates" / "default.conf.template"
SCENE_CENTER = (-54.5358, -25.3399)  # lon, lat of the Landsat 8 sample scene


def render_template(text: str, env: dict[str, str]) -> str:
    """envsubst as the nginx image runs it: only variables that are defined are replaced."""
    return re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), text)


class Nginx(NginxProcess):
    """nginx with the project's template, in a temporary prefix, as the current user."""

    def __init__(self, prefix: Path, upstream: str) -> None:
        super().__init__(prefix)
        env = {
            "NGINX_PORT": f"127.0.0.1:{self.port}",
            "NGINX_API_UPSTREAM": upstream,
            "NGINX_CACHE_DIR": str(prefix / "cache"),
            "NGINX_CACHE_MAX_SIZE": "100m",
            "NGINX_ACCESS_LOG": str(self.access_log),
        }
        rendered = render_template(TEMPLATE.read_text(), env)
        assert "${" not in rendered, "template variable left unrendered"
        (prefix / "conf.d" / "default.conf").write_text(rendered)


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Callable[[str], Nginx]]:
    """``start(upstream "host:port") -> Nginx`` (running); stopped at teardown."""
    started: list[Nginx] = []

    def start(upstream: str) -> Nginx:
        nginx = Nginx(tmp_path / f"nginx-{len(started)}", upstream)
        result = nginx.check()
        assert result.returncode == 0, result.stderr
        nginx.start()
        started.append(nginx)
        return nginx

    yield start
    for nginx in started:
        nginx.stop()


def tile_path(sample_scene: Path, z: int, dx: int = 0, sr: str = "auto") -> str:
    tms = morecantile.tms.get("WebMercatorQuad")
    tile = tms.tile(*SCENE_CENTER, z)
    cog = sample_scene / "landsat8" / "LC08_L1TP_224078_20200518_rgb8.tif"
    return f"/cog/tiles/WebMercatorQuad/{z}/{tile.x + dx}/{tile.y}.png?url={cog}&sr={sr}"


def api_requests(server_url: str) -> float:
    """Requests the API has answered so far (its own histogram), /metrics scrapes excluded."""
    text = httpx.get(f"{server_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "hndsr_http_request_duration_seconds_count"
                and sample.labels.get("route") != "/metrics"
            ):
                total += sample.value
    return total


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = Nginx(tmp_path, "127.0.0.1:9")
    result = nginx.check()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    conf = (tmp_path / "conf.d" / "default.conf").read_text()
    for directive in (
        "proxy_cache hndsr_tiles;",
        "proxy_cache_lock on;",
        "proxy_cache_use_stale ",
        'proxy_cache_key "$scheme://$http_host$request_uri";',
        "add_header X-Cache-Status $upstream_cache_status always;",
    ):
        assert directive in conf
    # nginx honours the upstream's Cache-Control unless told otherwise: never tell it so
    assert "proxy_ignore_headers" not in conf


def test_nginx_rejects_a_broken_template(tmp_path: Path) -> None:
    """The nginx -t check above can fail: an unknown directive is refused."""
    nginx = Nginx(tmp_path, "127.0.0.1:9")
    broken = nginx.prefix / "conf.d" / "default.conf"
    broken.write_text(broken.read_text().replace("proxy_cache_lock on;", "proxy_cache_lok on;"))
    result = nginx.check()
    assert result.returncode != 0
    assert "proxy_cache_lok" in result.stderr


def test_second_request_is_an_edge_cache_hit(
    server_url: str, sample_scene: Path, edge: Callable[[str], Nginx]
) -> None:
    nginx = edge(server_url.removeprefix("http://"))
    url = f"http://127.0.0.1:{nginx.port}"
    path = tile_path(sample_scene, 13)
    first = httpx.get(url + path, timeout=60)
    second = httpx.get(url + path, timeout=60)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    assert first.headers["x-cache-status"] == "MISS"
    assert second.status_code == 200
    assert second.headers["x-cache-status"] == "HIT"
    assert second.content == first.content
    # the API's headers survive the edge (the API's own X-Cache is a different header)
    assert second.headers["x-sr-mode"] == first.headers["x-sr-mode"]
    assert "x-cache" in first.headers and first.headers["x-cache"] != "HIT"
    assert "max-age" in second.headers["cache-control"]
    # the cache key is the full URI: another render parameter is another entry
    other = httpx.get(url + path + "&rescale=0,200", timeout=60)
    assert other.status_code == 200
    assert other.headers["x-cache-status"] == "MISS"
    # conditional requests are answered by the edge
    etag = second.headers["etag"]
    not_modified = httpx.get(url + path, headers={"If-None-Match": etag}, timeout=60)
    assert not_modified.status_code == 304
    assert len(nginx.log_lines(path.split("?")[0])) >= 3


def test_twenty_concurrent_cold_requests_reach_the_api_once(
    server_url: str, sample_scene: Path, edge: Callable[[str], Nginx]
) -> None:
    nginx = edge(server_url.removeprefix("http://"))
    url = f"http://127.0.0.1:{nginx.port}"
    # an SR tile (zoom past native), not requested before in this session
    path = tile_path(sample_scene, 14, dx=3)
    before = api_requests(server_url)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            return await asyncio.gather(*(client.get(url + path) for _ in range(20)))

    responses = asyncio.run(burst())
    after = api_requests(server_url)
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    statuses = sorted(r.headers["x-cache-status"] for r in responses)
    assert statuses.count("MISS") == 1, statuses
    assert after - before == 1, f"the API answered {after - before} requests"
    # nginx's log agrees: one line went upstream, the others were served from the cache
    lines = nginx.log_lines(path.split("?")[0])
    assert len(lines) == 20
    assert sum("upstream=-" not in line for line in lines) == 1, lines


def test_probes_bypass_the_cache_and_metrics_stay_private(
    server_url: str, edge: Callable[[str], Nginx]
) -> None:
    nginx = edge(server_url.removeprefix("http://"))
    url = f"http://127.0.0.1:{nginx.port}"
    before = api_requests(server_url)
    for _ in range(3):
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 200
        assert "x-cache-status" not in ready.headers
    assert api_requests(server_url) - before == 3
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 404


class ScriptedUpstream(BaseHTTPRequestHandler):
    """Answers GET /<case> with the headers of that case and counts the requests."""

    cases = {
        "/max-age": [("Cache-Control", "public, max-age=1")],
        "/no-store": [("Cache-Control", "no-store")],
        "/private": [("Cache-Control", "private, max-age=600")],
        "/degraded": [("Cache-Control", "public, max-age=600"), ("X-SR-Mode", "degraded-bicubic")],
        "/sr": [("Cache-Control", "public, max-age=600"), ("X-SR-Mode", "fast")],
    }
    hits: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        body = b"tile-bytes"
        self.send_response(200)
        for name, value in self.cases.get(self.path, []):
            self.send_header(name, value)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_edge_follows_upstream_cache_control(edge: Callable[[str], Nginx]) -> None:
    ScriptedUpstream.hits = {}
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedUpstream)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        nginx = edge(f"127.0.0.1:{upstream.server_address[1]}")
        url = f"http://127.0.0.1:{nginx.port}"

        def status(path: str) -> str:
            response = httpx.get(url + path, timeout=10)
            assert response.status_code == 200
            return response.headers["x-cache-status"]

        assert [status("/sr"), status("/sr")] == ["MISS", "HIT"]
        # not stored: no-store, private, and degraded tiles whatever their Cache-Control
        for path in ("/no-store", "/private", "/degraded"):
            assert [status(path), status(path)] == ["MISS", "MISS"], path
            assert ScriptedUpstream.hits[path] == 2
        # max-age=1: a hit at once, expired (refetched) after it
        assert [status("/max-age"), status("/max-age")] == ["MISS", "HIT"]
        time.sleep(2.1)
        assert status("/max-age") in ("EXPIRED", "STALE", "UPDATING")
        assert ScriptedUpstream.hits["/sr"] == 1
    finally:
        upstream.shutdown()
        upstream.server_close()
