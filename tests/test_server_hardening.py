"""Through a real server: the probes of issue 13 each get their 4xx/504 within a bound, with
the server's RSS under a bound and /healthz answering in under a second meanwhile; an idle
server after a burst serves explicit modes; a slow render answers 504 at its deadline."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.apps.http import SCENE, TEST_APP, centre_tiles, tile_path
from tests.plugins.server import ServerPool

RSS_BOUND = int(1.5 * 2**30)
HEALTH_BOUND_S = 1.0
PROBE_BOUND_S = 10.0


class Watch:
    """While a probe runs: the server's peak RSS and the slowest /healthz answer."""

    def __init__(self, base: str, pid: int) -> None:
        self.base, self.process = base, psutil.Process(pid)
        self.peak_rss, self.slowest_health = 0, 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rss), threading.Thread(target=self._health)]

    def _rss(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            time.sleep(0.02)

    def _health(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.slowest_health = max(self.slowest_health, time.perf_counter() - started)
                time.sleep(0.05)

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@pytest.fixture(scope="module")
def server(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server on the sample scene with the real model and default limits, and its pid."""
    pool = ServerPool(tmp_path_factory.mktemp("hardening"))
    try:  # a server that fails to start is stopped too
        base = pool.start({"HNDSR_DATA_DIR": str(sample_scene)})
        yield {"base": base, "pid": pool.processes[-1].pid, "data": sample_scene}
    finally:
        pool.close()


def _feature(vertices: int) -> bytes:
    ring = [[-54.6 + 0.1 * i / vertices, -25.3] for i in range(vertices - 1)]
    ring.append(ring[0])
    body = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    return json.dumps(body).encode()


Probe = tuple[str, str, str, dict, bytes | None, set[int]]


@functools.cache
def _probes(data: Path) -> list[Probe]:
    """(name, method, path, params, body, accepted statuses) of every probe in the issue;
    ``url`` is the sample scene unless the params name another."""
    item = str(data / SCENE.replace(".tif", ".json"))
    (z, x, y), *_ = centre_tiles(14, 1, skip=20)
    tile = f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    stac_tile = tile.replace("/cog/", "/stac/")
    null_geometry = b'{"type": "Feature", "geometry": null, "properties": {}}'
    mosaic_bad_crs = json.dumps(
        {
            "mosaicjson": "0.0.3",
            "minzoom": 0,
            "maxzoom": 1,
            "tiles": {},
            "tilematrixset": {
                "crs": "",
                "tileMatrices": [
                    {
                        "id": "0",
                        "scaleDenominator": 1.0,
                        "cellSize": 1.0,
                        "pointOfOrigin": [0.0, 0.0],
                        "tileWidth": 256,
                        "tileHeight": 256,
                        "matrixWidth": 1,
                        "matrixHeight": 1,
                    }
                ],
            },
        }
    ).encode()
    return [
        ("tilesize=16384", "GET", tile, {"tilesize": 16384}, None, {400}),
        ("buffer=100000 on an SR tile", "GET", tile, {"buffer": 100000}, None, {400}),
        ("preview 20000x20000", "GET", "/cog/preview/20000x20000.png", {}, None, {400}),
        (
            "200-band expression",
            "GET",
            "/cog/preview.png",
            {"expression": ";".join(["b1"] * 200)},
            None,
            {400},
        ),
        ("histogram_bins=10^7", "GET", "/cog/statistics", {"histogram_bins": 10**7}, None, {400}),
        ("10^6-vertex feature", "POST", "/cog/feature.png", {}, _feature(10**6), {413}),
        (
            "low-zoom tile 1/1/1",
            "GET",
            "/cog/tiles/WebMercatorQuad/1/1/1.png",
            {},
            None,
            {200, 404},
        ),
        (
            "low-zoom tile 0/0/0",
            "GET",
            "/cog/tiles/WebMercatorQuad/0/0/0.png",
            {},
            None,
            {200, 404},
        ),
        (
            "tilejson maxzoom=2000",
            "GET",
            "/cog/WebMercatorQuad/tilejson.json",
            {"maxzoom": 2000},
            None,
            {400},
        ),
        ("WMTS maxzoom=2000", "GET", "/cog/WMTSCapabilities.xml", {"maxzoom": 2000}, None, {400}),
        ("stac info assets=", "GET", "/stac/info", {"url": item, "assets": ""}, None, {400}),
        (
            "stac statistics assets=",
            "GET",
            "/stac/statistics",
            {"url": item, "assets": ""},
            None,
            {400},
        ),
        ("stac tile assets=", "GET", stac_tile, {"url": item, "assets": ""}, None, {400}),
        ("feature geometry null", "POST", "/cog/feature.png", {}, null_geometry, {400, 422}),
        (
            "mosaic with an unparseable CRS",
            "POST",
            "/mosaicjson/validate",
            {},
            mosaic_bad_crs,
            {400},
        ),
        ("point 0,0", "GET", "/cog/point/0,0", {}, None, {404}),
        ("bbox 0,0,0,0", "GET", "/cog/bbox/0,0,0,0.png", {}, None, {400}),
        (
            "terrarium params null",
            "GET",
            "/cog/preview.png",
            {"algorithm": "terrarium", "algorithm_params": "null"},
            None,
            {400},
        ),
        (
            "5000-term expression",
            "GET",
            "/cog/preview.png",
            {"expression": "+".join(["b1"] * 5000)},
            None,
            {400},
        ),
        (
            "non-raster file",
            "GET",
            "/cog/info",
            {"url": str(data / "landsat8/SHA256SUMS")},
            None,
            {415},
        ),
    ]


PROBE_NAMES = [probe[0] for probe in _probes(Path("."))]


@pytest.mark.parametrize("name", PROBE_NAMES)
def test_probe_gets_its_client_error_quickly_with_memory_and_health_bounded(server, name):
    _, method, path, params, body, statuses = next(
        p for p in _probes(server["data"]) if p[0] == name
    )
    params = {"url": str(server["data"] / SCENE), **params}
    headers = {"content-type": "application/json"} if body else {}
    with Watch(server["base"], server["pid"]) as watch:
        started = time.perf_counter()
        response = httpx.request(
            method, server["base"] + path, params=params, content=body, headers=headers, timeout=60
        )
        elapsed = time.perf_counter() - started
    print(
        f"{name}: {response.status_code} in {elapsed:.2f}s, peak RSS "
        f"{watch.peak_rss / 2**20:.0f} MiB, slowest /healthz {watch.slowest_health * 1000:.0f} ms"
    )
    assert response.status_code in statuses, response.text[:300]
    assert elapsed < PROBE_BOUND_S
    assert watch.peak_rss < RSS_BOUND
    assert watch.slowest_health < HEALTH_BOUND_S
    assert str(server["data"]) not in response.text  # no absolute path in the body


def test_uppercase_extension_answers_the_same_cached_or_not(server):
    (z, x, y), *_ = centre_tiles(12, 1, skip=20)
    scene = str(server["data"] / SCENE)
    lower = f"{server['base']}/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    upper = lower[:-4] + ".PNG"
    before = httpx.get(upper, params={"url": scene}, timeout=60).status_code
    assert httpx.get(lower, params={"url": scene}, timeout=60).status_code == 200  # now cached
    after = httpx.get(upper, params={"url": scene}, timeout=60).status_code
    assert before == after == 422


def test_error_bodies_name_no_server_path(server):
    missing = server["data"] / "landsat8/missing.tif"
    response = httpx.get(server["base"] + "/cog/info", params={"url": str(missing)}, timeout=30)
    assert response.status_code == 404
    assert "/" not in response.json()["detail"]


def test_openapi_documents_the_error_responses(server):
    spec = httpx.get(server["base"] + "/openapi.json", timeout=30).json()
    operation = spec["paths"]["/cog/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}"]["get"]
    assert {"400", "403", "404", "415", "429", "503", "504"} <= operation["responses"].keys()


@pytest.fixture
def test_server(live_server, sample_scene: Path, tmp_path: Path):
    """``start(**env)``: a server with the bicubic test upscaler presented as a model."""

    def start(**env: str) -> str:
        full = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_CACHE_DIR": str(tmp_path / "c"), **env}
        return live_server(full, app=TEST_APP)

    return start


def test_an_idle_server_after_a_burst_serves_explicit_modes(test_server, sample_scene):
    # a 1 ms budget: every batch estimate is over it, so only an idle runtime admits
    base = test_server(HNDSR_SR_LATENCY_BUDGET_MS="1", HNDSR_TEST_DELAY_S="0.05")
    paths = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(14, 40)]

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(paths))
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            return list(await asyncio.gather(*(client.get(p) for p in paths)))

    statuses = [r.status_code for r in asyncio.run(burst())]
    assert 503 in statuses and set(statuses) <= {200, 503}, statuses
    time.sleep(1.0)
    for tile in centre_tiles(14, 3, skip=40):
        response = httpx.get(base + tile_path(sample_scene, *tile, sr="fast"), timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["X-SR-Mode"] == "fast"


def test_a_render_past_the_deadline_answers_504_at_the_deadline(test_server, sample_scene):
    base = test_server(HNDSR_RENDER_DEADLINE_S="0.5", HNDSR_TEST_DELAY_S="2")
    (tile,) = centre_tiles(14, 1, skip=20)
    started = time.perf_counter()
    response = httpx.get(base + tile_path(sample_scene, *tile, sr="fast"), timeout=30)
    elapsed = time.perf_counter() - started
    assert response.status_code == 504
    assert "HNDSR_RENDER_DEADLINE_S" in response.json()["detail"]
    assert elapsed < 1.5
    started = time.perf_counter()
    assert httpx.get(base + "/healthz", timeout=5).status_code == 200
    assert time.perf_counter() - started < HEALTH_BOUND_S
