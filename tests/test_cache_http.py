"""The tile cache inside the real app (in process): X-Cache, ETag/304, keys, promotion,
corrupt entries, source changes, allowlist on hits, purge by model version."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from contextlib import AsyncExitStack
from pathlib import Path

import diskcache
import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from cache import HitFastPath
from cache.entry import Entry
from cache.prewarm import app_client
from sr_engine import BicubicUpscaler
from tileserver.app import create_app
from tileserver.cli import app as cli
from tileserver.settings import Settings

COG = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
TILE = "/cog/tiles/WebMercatorQuad/14/5710/9384.png"  # past native zoom: bicubic SR runs


class NamedModel(BicubicUpscaler):
    """The bicubic baseline loaded as "the model" under a given version."""

    modes = ("bicubic", "fast")
    default_mode = "fast"

    def __init__(self, version: str) -> None:
        self.version = version

    def upscale_batch(self, lr, coords, cell=None, pixel_offsets=None, mode="fast", seed=0):
        return super().upscale_batch(lr, coords, cell, pixel_offsets, "bicubic", seed)


def sr_tiles() -> float:
    """Tiles super-resolved so far in this process (all modes)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "hndsr_sr_tiles"
        for sample in metric.samples
        if sample.name == "hndsr_sr_tiles_total"
    )


def cache_errors(tier: str) -> float:
    return (
        REGISTRY.get_sample_value("hndsr_tile_cache_total", {"tier": tier, "result": "error"}) or 0
    )


@pytest.fixture
def data_dir(sample_scene: Path, tmp_path: Path) -> Path:
    """A private copy of the rgb8 COG (tests change its mtime)."""
    target = tmp_path / "data" / COG
    target.parent.mkdir(parents=True)
    shutil.copy(sample_scene / COG, target)
    return tmp_path / "data"


class AppClient:
    """The real app served in this process (lifespan included) on its own event loop."""

    def __init__(self, app) -> None:
        self.app = app
        self.runner = asyncio.Runner()
        self.stack = AsyncExitStack()
        self.client = self.runner.run(app_client(app, self.stack))

    def get(self, path: str = TILE, params: dict | None = None, headers: dict | None = None):
        """One GET (a path with a query is sent as it is)."""
        query = {"url": str(self.app.state.settings.data_dir / COG), "sr": "bicubic"}
        query.update(params or {})
        request = self.client.get(path, params=None if "?" in path else query, headers=headers)
        return self.runner.run(request)

    def close(self) -> None:
        self.runner.run(self.stack.aclose())
        self.runner.close()


@pytest.fixture
def serve():
    """``serve(data_dir, cache_dir, redis_url=None, upscaler=None) -> AppClient``."""
    clients: list[AppClient] = []

    def start(data_dir: Path, cache_dir: Path, redis_url: str | None = None, **kwargs):
        settings = Settings(data_dir=data_dir, cache_dir=cache_dir, redis_url=redis_url)
        clients.append(AppClient(create_app(settings, **kwargs)))
        return clients[-1]

    yield start
    for client in clients:
        client.close()


def test_hit_replays_bytes_and_headers_and_answers_304(
    serve, data_dir: Path, tmp_path: Path
) -> None:
    app = serve(data_dir, tmp_path / "cache")
    before = sr_tiles()
    miss = app.get()
    hit = app.get()
    assert (miss.status_code, hit.status_code) == (200, 200)
    assert miss.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT-memory"
    assert hit.content == miss.content and hit.headers["etag"] == miss.headers["etag"]
    assert hit.headers["x-sr-mode"] == "bicubic" and hit.headers["x-sr-scale"]
    assert "max-age=86400" in hit.headers["cache-control"]
    assert sr_tiles() - before == 1
    not_modified = app.get(headers={"If-None-Match": hit.headers["etag"]})
    assert not_modified.status_code == 304 and not_modified.content == b""


def test_foreign_params_and_param_order_do_not_change_the_key(
    serve, data_dir: Path, tmp_path: Path
) -> None:
    app = serve(data_dir, tmp_path / "cache")
    first = app.get(params={"bidx": ["1", "2", "3"], "rescale": "0,255"})
    assert first.headers["x-cache"] == "MISS"
    url = str(data_dir / COG)
    reordered = f"{TILE}?rescale=0,255&service=WMTS&version=1.0.0&bidx=1&sr=bicubic&url={url}"
    response = app.get(path=reordered + "&bidx=2&bidx=3")
    assert response.headers["x-cache"] == "HIT-memory"
    other_band_order = app.get(params={"bidx": ["3", "2", "1"], "rescale": "0,255"})
    assert other_band_order.headers["x-cache"] == "MISS"


def test_disk_hit_is_promoted_to_memory(serve, data_dir: Path, tmp_path: Path) -> None:
    serve(data_dir, tmp_path / "cache").get()
    fresh = serve(data_dir, tmp_path / "cache")  # empty memory, same disk
    assert fresh.get().headers["x-cache"] == "HIT-disk"
    assert fresh.get().headers["x-cache"] == "HIT-memory"


def test_corrupt_disk_entry_is_recomputed(serve, data_dir: Path, tmp_path: Path) -> None:
    good = serve(data_dir, tmp_path / "cache").get()
    with diskcache.Cache(str(tmp_path / "cache")) as disk:
        (key,) = list(disk.iterkeys())
        disk.set(key, disk.get(key)[:-100])  # truncated
    app = serve(data_dir, tmp_path / "cache")
    errors, computed = cache_errors("disk"), sr_tiles()
    response = app.get()
    assert response.headers["x-cache"] == "MISS"
    assert response.content == good.content
    assert sr_tiles() - computed == 1 and cache_errors("disk") - errors == 1


def test_corrupt_redis_entry_is_recomputed(
    serve, data_dir: Path, tmp_path: Path, redis_server
) -> None:
    good = serve(data_dir, tmp_path / "a", redis_server.url).get()
    raw = redis.Redis.from_url(redis_server.url)
    (key,) = raw.keys("hndsr:tile:*")
    value = bytearray(raw.get(key))
    value[len(value) // 2] ^= 0xFF  # one flipped byte
    raw.set(key, bytes(value))
    app = serve(data_dir, tmp_path / "b", redis_server.url)
    errors, computed = cache_errors("redis"), sr_tiles()
    response = app.get()
    assert response.headers["x-cache"] == "MISS" and response.content == good.content
    assert sr_tiles() - computed == 1 and cache_errors("redis") - errors == 1
    assert Entry.decode(raw.get(key)).body == good.content  # the recomputed entry replaced it


def test_changed_source_mtime_leads_to_recomputation(serve, data_dir: Path, tmp_path: Path) -> None:
    app = serve(data_dir, tmp_path / "cache")
    assert app.get().headers["x-cache"] == "MISS"
    source = data_dir / COG
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    time.sleep(2.1)  # the dataset identity is remembered for 2 s
    assert app.get().headers["x-cache"] == "MISS"
    assert app.get().headers["x-cache"] == "HIT-memory"


def test_hits_still_check_the_allowlist(serve, data_dir: Path, tmp_path: Path) -> None:
    assert serve(data_dir, tmp_path / "cache").get().status_code == 200
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    locked = serve(elsewhere, tmp_path / "cache")  # same cache, data dir not allowed
    response = locked.get(params={"url": str(data_dir / COG)})
    assert response.status_code == 403 and "x-cache" not in response.headers


def test_new_model_version_and_purge_by_model_version_recompute(
    serve, data_dir: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    for version in ("model-a", "model-b"):
        app = serve(data_dir, cache_dir, upscaler=NamedModel(version))
        response = app.get(params={"sr": "fast"})
        assert response.headers["x-cache"] == "MISS"  # model-b never gets model-a's tile
        assert response.headers["x-sr-model"] == version
    result = CliRunner().invoke(
        cli, ["cache", "purge", "--model-version", "model-a", "--cache-dir", str(cache_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "1 tiles deleted" in result.output
    model_a = serve(data_dir, cache_dir, upscaler=NamedModel("model-a"))
    model_b = serve(data_dir, cache_dir, upscaler=NamedModel("model-b"))
    computed = sr_tiles()  # after the warm-ups
    again_a, again_b = model_a.get(params={"sr": "fast"}), model_b.get(params={"sr": "fast"})
    assert again_a.headers["x-cache"] == "MISS" and sr_tiles() - computed == 1
    assert again_b.headers["x-cache"] == "HIT-disk"


def test_memory_hits_from_the_fast_path_match_full_stack_responses(
    serve, data_dir: Path, tmp_path: Path
) -> None:
    serve(data_dir, tmp_path / "cache").get()
    app = serve(data_dir, tmp_path / "cache")
    origin = {"Origin": "https://map.example"}
    route = {"route": "/cog/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}", "status": "200"}
    disk_hit = app.get(headers=origin)  # through CORS, metrics and the cache middleware
    observed = REGISTRY.get_sample_value("hndsr_http_request_duration_seconds_count", route)
    memory_hit = app.get(headers=origin)  # answered in front of the stack
    assert (disk_hit.headers["x-cache"], memory_hit.headers["x-cache"]) == (
        "HIT-disk",
        "HIT-memory",
    )
    assert {k: v for k, v in disk_hit.headers.items() if k != "x-cache"} == {
        k: v for k, v in memory_hit.headers.items() if k != "x-cache"
    }
    assert memory_hit.headers["access-control-allow-origin"] == "*"
    assert "X-Cache" in memory_hit.headers["access-control-expose-headers"]
    after = REGISTRY.get_sample_value("hndsr_http_request_duration_seconds_count", route)
    assert after - observed == 1


def counted_samples() -> dict[tuple, float]:
    """Request-duration counts and tile-cache lookups so far, by labels."""
    names = ("hndsr_http_request_duration_seconds_count", "hndsr_tile_cache_total")
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name in names
    }


def delta(before: dict[tuple, float], after: dict[tuple, float]) -> dict[tuple, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_fast_path_and_framework_stack_answer_the_same_request_alike(
    serve, data_dir: Path, tmp_path: Path
) -> None:
    app = serve(data_dir, tmp_path / "cache")
    first = app.get()
    assert first.headers["x-cache"] == "MISS"
    fast_path = app.app.middleware_stack
    while not isinstance(fast_path, HitFastPath):
        fast_path = fast_path.app
    stack_calls = []
    framework_stack = fast_path.app

    async def counted_stack(scope, receive, send):
        stack_calls.append(scope["path"])
        await framework_stack(scope, receive, send)

    fast_path.app = counted_stack
    # the same request sent below the fast path: CORS -> metrics -> cache middleware -> app
    below = httpx.AsyncClient(transport=httpx.ASGITransport(app=counted_stack), base_url="http://t")
    query = {"url": str(data_dir / COG), "sr": "bicubic"}
    cases = [{"Origin": "https://map.example"}, {}, {"If-None-Match": first.headers["etag"]}]
    for request_headers in cases:
        before = counted_samples()
        via_fast_path = app.get(headers=request_headers)
        between = counted_samples()
        fast_counted = delta(before, between)
        assert stack_calls == []  # answered in front of the stack
        via_stack = app.runner.run(below.get(TILE, params=query, headers=request_headers))
        stack_counted = delta(between, counted_samples())
        assert stack_calls == [TILE]
        stack_calls.clear()
        assert via_fast_path.status_code == via_stack.status_code
        assert dict(via_fast_path.headers) == dict(via_stack.headers)
        assert via_fast_path.content == via_stack.content
        assert via_fast_path.headers["x-cache"] == "HIT-memory"
        assert fast_counted == stack_counted
        status = str(via_fast_path.status_code)
        labels = [
            ("route", "/cog/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}"),
            ("status", status),
        ]
        assert fast_counted[("hndsr_http_request_duration_seconds_count", *labels)] == 1
        hit = ("hndsr_tile_cache_total", ("result", "hit"), ("tier", "memory"))
        assert fast_counted[hit] == 1
    assert via_fast_path.status_code == 304
    cors = dict(app.get(headers=cases[0]).headers)
    assert (
        cors["access-control-allow-origin"] == "*"
        and "X-Cache" in cors["access-control-expose-headers"]
    )
    app.runner.run(below.aclose())


def test_hits_replay_their_own_headers_when_bodies_are_identical(
    serve, data_dir: Path, tmp_path: Path
) -> None:
    app = serve(data_dir, tmp_path / "cache")
    corners = [
        "/cog/tiles/WebMercatorQuad/14/5696/9372.png",
        "/cog/tiles/WebMercatorQuad/14/5723/9372.png",
    ]
    first = [app.get(path, params={"sr": "off"}) for path in corners]  # empty nodata corners
    assert first[0].content == first[1].content
    assert first[0].headers["content-bbox"] != first[1].headers["content-bbox"]
    for path, original in zip(corners, first, strict=True):
        hit = app.get(path, params={"sr": "off"})
        assert hit.headers["x-cache"] == "HIT-memory"
        assert hit.headers["content-bbox"] == original.headers["content-bbox"]
