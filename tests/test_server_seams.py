"""Seams: four SR tiles at zoom z, stitched, equal the one 512-px tile at z-1 (<= 2 DN).

Run at a non-integer scale (the sample scene as is) and at an integer scale (the scene
warped to Web Mercator at exactly twice the pixel size of zoom 14), for the bicubic
baseline and for a random deep conv stand-in model served by ``create_conv_app``.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from fastapi import FastAPI
from fastapi.testclient import TestClient
from morecantile import tms
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject
from rio_tiler.io import Reader

from sr_engine.bicubic import bicubic_at
from tests.plugins.server import ServerPool
from tileserver.app import create_app
from tileserver.settings import Settings

Fetch = Callable[[int, int, int, int], tuple[np.ndarray, dict]]

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
WEB_MERCATOR = tms.get("WebMercatorQuad")
INTEGER_ZOOM = 14  # the warped copy has exactly 2x the pixel size of this zoom


class RandomConvUpscaler:
    """A position-equivariant stand-in model: 6 random 3x3 convs on the LR, then bicubic
    sampling at the interface's exact coordinates. Receptive field: 6 LR px each side."""

    version = "random-conv-1"
    modes: tuple[str, ...] = ("fast",)
    default_mode = "fast"
    halo = 6 + 2  # conv receptive field + bicubic support

    def __init__(self, channels: int = 3, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        gain = 1.5 / (9 * channels) ** 0.5  # keeps tanh activations out of saturation
        self.weights = [
            torch.randn(channels, channels, 3, 3, generator=generator) * gain for _ in range(6)
        ]

    def upscale(self, lr, scale, mode="fast", seed=0):
        raise NotImplementedError("the server only calls upscale_batch")

    def upscale_batch(
        self, lr, coords, cell=None, pixel_offsets=None, mode="fast", seed=0
    ) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
            features = x - 0.5
            for weight in self.weights:
                features = torch.tanh(F.conv2d(features, weight, padding=1))
            refined = x + 0.5 * features
            return bicubic_at(refined, torch.from_numpy(coords)).clamp(0, 1).numpy()


def create_conv_app() -> FastAPI:
    """The real app with the random conv stand-in as its model (uvicorn factory)."""
    return create_app(upscaler=RandomConvUpscaler())


@pytest.fixture(scope="module")
def seam_data(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the scene and its Web Mercator copy at an integer scale."""
    data = tmp_path_factory.mktemp("seam-data")
    shutil.copy(sample_scene / SCENE, data / "scene.tif")
    res = WEB_MERCATOR.matrix(INTEGER_ZOOM).cellSize * 2
    with Reader(str(data / "scene.tif")) as src:
        left, bottom, right, top = src.get_geographic_bounds("EPSG:3857")
        origin_x, origin_y = (
            WEB_MERCATOR.xy_bounds(0, 0, 0).left,
            WEB_MERCATOR.xy_bounds(0, 0, 0).top,
        )
        col0 = int(np.ceil((left - origin_x) / res))
        row0 = int(np.ceil((origin_y - top) / res))
        width = int((right - origin_x) / res) - col0
        height = int((origin_y - bottom) / res) - row0
        transform = from_origin(origin_x + col0 * res, origin_y - row0 * res, res, res)
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 3,
            "dtype": "uint8",
            "crs": "EPSG:3857",
            "transform": transform,
            "nodata": 0,
            "tiled": True,
        }
        with rasterio.open(data / "integer.tif", "w", **profile) as dst:
            for band in (1, 2, 3):
                out = np.zeros((height, width), dtype=np.uint8)
                reproject(
                    rasterio.band(src.dataset, band),
                    out,
                    dst_transform=transform,
                    dst_crs="EPSG:3857",
                    resampling=Resampling.bilinear,
                )
                dst.write(out, band)
    return data


def http_fetcher(client: httpx.Client | TestClient, path: Path, sr: str = "auto") -> Fetch:
    """Fetch tiles of ``path`` as RGBA arrays (with their headers) through ``client``."""

    def fetch(z: int, x: int, y: int, tilesize: int) -> tuple[np.ndarray, dict]:
        response = client.get(
            f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
            params={"url": str(path), "tilesize": tilesize, "sr": sr},
        )
        assert response.status_code == 200, response.text
        return np.asarray(Image.open(io.BytesIO(response.content))), dict(response.headers)

    return fetch


def seam_difference(fetch: Fetch, path: Path, z: int) -> tuple[int, dict]:
    """Max |stitched 4 x 256 at z - 512 at z-1| over fully valid pixels, and the headers."""
    with Reader(str(path)) as src:
        lon0, lat0, lon1, lat1 = src.get_geographic_bounds("EPSG:4326")
    parent = WEB_MERCATOR.tile((lon0 + lon1) / 2, (lat0 + lat1) / 2, z - 1)
    big, headers = fetch(z - 1, parent.x, parent.y, 512)
    stitched = np.zeros_like(big)
    for dy in (0, 1):
        for dx in (0, 1):
            tile, _ = fetch(z, 2 * parent.x + dx, 2 * parent.y + dy, 256)
            stitched[dy * 256 : (dy + 1) * 256, dx * 256 : (dx + 1) * 256] = tile
    assert (big[..., 3] == 255).all() and (stitched[..., 3] == 255).all()
    diff = np.abs(stitched[..., :3].astype(int) - big[..., :3].astype(int))
    return int(diff.max()), headers


CASES = [
    pytest.param("scene.tif", 14, id="non-integer-scale-3.48"),
    pytest.param("integer.tif", INTEGER_ZOOM, id="integer-scale-2"),
]


@pytest.fixture(scope="module")
def servers(seam_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One real server with the default app and one with the conv stand-in."""
    pool = ServerPool(tmp_path_factory.mktemp("seam-servers"))
    env = {"HNDSR_DATA_DIR": str(seam_data)}
    yield {
        "bicubic": pool.start(env),
        "conv": pool.start(env, app="tests.test_server_seams:create_conv_app"),
    }
    pool.close()


@pytest.mark.parametrize(("name", "z"), CASES)
def test_bicubic_tiles_have_no_seams(servers, seam_data, name, z):
    with httpx.Client(base_url=servers["bicubic"], timeout=120) as client:
        worst, headers = seam_difference(
            http_fetcher(client, seam_data / name, sr="bicubic"), seam_data / name, z
        )
    assert headers["x-sr-mode"] == "bicubic"
    assert worst <= 2


@pytest.mark.parametrize(("name", "z"), CASES)
def test_deep_conv_model_tiles_have_no_seams(servers, seam_data, name, z):
    with httpx.Client(base_url=servers["conv"], timeout=120) as client:
        worst, headers = seam_difference(
            http_fetcher(client, seam_data / name), seam_data / name, z
        )
    assert headers["x-sr-mode"] == "fast"
    assert headers["x-sr-model"] == RandomConvUpscaler.version
    assert worst <= 2


def test_a_halo_smaller_than_the_receptive_field_shows_seams(seam_data, tmp_path):
    """The check above can fail: the same model with a 2-px halo leaves seams of tens of DN."""
    model = RandomConvUpscaler()
    model.halo = 2
    settings = Settings(data_dir=seam_data, cache_dir=tmp_path / "cache")
    with TestClient(create_app(settings, upscaler=model)) as client:
        path = seam_data / "scene.tif"
        worst, _ = seam_difference(http_fetcher(client, path), path, 14)
    assert worst > 10
