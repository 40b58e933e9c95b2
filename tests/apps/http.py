"""HTTP helpers of the server tests: tile URLs of the sample scene, concurrent GETs, metrics."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import httpx
import morecantile
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
CENTRE = (-54.535, -25.34)
"""lon, lat of the sample scene's centre, away from its nodata collar."""
TEST_APP = "tests.apps.server_app:create_app"


def tile_path(data_dir: Path, z: int, x: int, y: int, **params: str) -> str:
    """Path and query of a 256-px PNG tile of the sample scene."""
    query = "&".join(f"{k}={v}" for k, v in {"url": str(data_dir / SCENE), **params}.items())
    return f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{query}"


def centre_tiles(z: int, count: int, skip: int = 0) -> list[tuple[int, int, int]]:
    """``count`` distinct tiles of zoom ``z`` in rows of 8 around the scene's centre."""
    centre = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, z)
    return [(z, centre.x - 4 + i % 8, centre.y - 2 + i // 8) for i in range(skip, skip + count)]


def get_many(base: str, paths: Sequence[str]) -> list[httpx.Response]:
    """GET all paths at once, one connection each; responses in order."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(paths) + 1)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            return list(await asyncio.gather(*(client.get(p) for p in paths)))

    return asyncio.run(run())


def metric(base: str, name: str, **labels: str) -> float:
    """Sum of the ``/metrics`` samples named ``name`` whose labels include ``labels``."""
    text = httpx.get(base + "/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def pixels(response: httpx.Response) -> np.ndarray:
    """The decoded PNG of a tile response, as int16 (rows, cols, bands)."""
    return np.asarray(Image.open(io.BytesIO(response.content))).astype(np.int16)


class Knobs:
    """The files that control a test server's upscaler (see ``tests.apps.server_app``)."""

    def __init__(self, folder: Path) -> None:
        self.gate = folder / "gate"
        self.fail = folder / "fail"
        self.fail_once = folder / "fail-once"

    def env(self) -> dict[str, str]:
        return {
            "HNDSR_TEST_GATE": str(self.gate),
            "HNDSR_TEST_FAIL": str(self.fail),
            "HNDSR_TEST_FAIL_ONCE": str(self.fail_once),
        }

    def close_gate(self) -> None:
        self.gate.touch()

    def open_gate(self) -> None:
        self.gate.unlink(missing_ok=True)
