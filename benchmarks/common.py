"""Shared benchmark pieces: a real uvicorn server in a subprocess (the test suite's
``ServerPool``), tile URLs, load, statistics."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.server import ServerPool

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
DATASET = DATA_DIR / "landsat8" / "LC08_L1TP_224078_20200518_rgb8.tif"
CENTRE = (-54.535, -25.34)
"""lon, lat of the sample scene's centre (away from its nodata collar)."""
BENCH_APP = "benchmarks.server_app:create_app"


def ensure_sample_scene() -> Path:
    """The sample COG, built into ``data/`` if it is missing."""
    if not DATASET.exists():
        from cogs.cli import DEFAULT_CACHE_DIR
        from cogs.sample_scene import build_sample_scene

        build_sample_scene(DATA_DIR, DEFAULT_CACHE_DIR)
    return DATASET


@contextmanager
def serve(env: dict[str, str] | None = None, app: str = BENCH_APP) -> Iterator[str]:
    """Run ``uvicorn --factory app`` with ``env`` and a fresh cache (the test suite's
    ``ServerPool``); yield its base URL once ``/readyz`` answers 200."""
    ensure_sample_scene()
    with tempfile.TemporaryDirectory(prefix="hndsr-bench-") as workdir:
        pool = ServerPool(Path(workdir))
        try:
            env = {"HNDSR_DATA_DIR": str(DATA_DIR), **(env or {})}
            yield pool.start(env, app, ready_path="/readyz", timeout_s=300)
        finally:
            pool.close()


def tile_path(z: int, x: int, y: int, **params: str) -> str:
    """Tile URL path of the sample scene (PNG, 256 px)."""
    query = "&".join(f"{k}={v}" for k, v in {"url": str(DATASET), **params}.items())
    return f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{query}"


def centre_tiles(z: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct tiles of zoom ``z`` in a square around the scene's centre."""
    import morecantile

    centre = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, z)
    side = int(np.ceil(np.sqrt(count)))
    tiles = [
        (z, centre.x - side // 2 + i, centre.y - side // 2 + j)
        for j in range(side)
        for i in range(side)
    ]
    return tiles[:count]


def viewport_tiles(z: int, width: int = 1920, height: int = 1080) -> list[tuple[int, int, int]]:
    """Tiles of a ``width`` x ``height`` map view centred on the scene at zoom ``z``."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    x, y = tms.xy(*CENTRE)
    res = tms.matrix(z).cellSize
    left, right = x - width / 2 * res, x + width / 2 * res
    top, bottom = y + height / 2 * res, y - height / 2 * res
    first = tms.tile(*tms.lnglat(left, top), z)
    last = tms.tile(*tms.lnglat(right - 1e-6, bottom + 1e-6), z)
    return [(z, tx, ty) for ty in range(first.y, last.y + 1) for tx in range(first.x, last.x + 1)]


@dataclass
class Result:
    """One HTTP response of a load run."""

    status: int
    seconds: float
    headers: Mapping[str, str]
    body: bytes


def fetch_all(base: str, paths: Sequence[str], concurrency: int) -> tuple[list[Result], float]:
    """GET every path with at most ``concurrency`` in flight; returns results and wall seconds.

    aiohttp, not httpx: httpx's connection pool spends seconds of client CPU assigning
    hundreds of concurrent connections, which the load tests would measure as server time.
    """

    async def run() -> tuple[list[Result], float]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as client:

            async def one(path: str) -> Result:
                start = time.perf_counter()
                async with client.get(path) as response:
                    body = await response.read()
                    return Result(
                        response.status, time.perf_counter() - start, response.headers, body
                    )

            start = time.perf_counter()
            results = await asyncio.gather(*(one(p) for p in paths))
            return list(results), time.perf_counter() - start

    return asyncio.run(run())


def metric(base: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` on ``/metrics`` whose labels include ``labels``."""
    text = httpx.get(base + "/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def check_ok(results: Sequence[Result]) -> None:
    """Fail the benchmark loudly if any request did not answer 200."""
    bad = [r.status for r in results if r.status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed: statuses {sorted(set(bad))}")
