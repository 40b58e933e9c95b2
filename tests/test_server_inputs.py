"""Input kinds through the app: 1-band and 3-band uint8, 4-band uint16, nodata edges,
and paletted rasters (never super-resolved by ``auto``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from morecantile import tms
from PIL import Image
from rasterio.transform import from_origin

from tileserver.app import create_app
from tileserver.settings import Settings

WEB_MERCATOR = tms.get("WebMercatorQuad")
Z_NATIVE = 12
RES = WEB_MERCATOR.matrix(Z_NATIVE).cellSize
ORIGIN = (-5_000_000.0, 2_000_000.0)  # a 512x512 raster in EPSG:3857 at zoom-12 resolution
SIZE = 512


def write(path: Path, data: np.ndarray, **extra) -> Path:
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": data.shape[0],
        "dtype": data.dtype,
        "crs": "EPSG:3857",
        "transform": from_origin(*ORIGIN, RES, RES),
        "tiled": True,
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def smooth(count: int, high: int, dtype: str) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    bands = [(np.sin(6 * xx + i) * np.cos(5 * yy - i) + 1) / 2 for i in range(count)]
    return (np.stack(bands) * (high - 100) + 50).astype(dtype)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    data = tmp_path_factory.mktemp("inputs")
    write(data / "gray.tif", smooth(1, 255, "uint8"))
    write(data / "rgb.tif", smooth(3, 255, "uint8"))
    write(data / "rgbn16.tif", smooth(4, 12000, "uint16"))
    edged = smooth(3, 255, "uint8")
    edged[:, :, SIZE // 2 :] = 0
    write(data / "edge.tif", edged, nodata=0)
    classes = (smooth(1, 255, "uint8") // 64).astype("uint8")
    with rasterio.open(write(data / "classes.tif", classes), "r+") as dst:
        dst.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 255, 0, 255), 2: (0, 0, 255, 255)})
    settings = Settings(data_dir=data, cache_dir=data / "cache")
    with TestClient(create_app(settings)) as test_client:
        yield test_client, data


def sr_tile(client: TestClient, path: Path, **params):
    """The zoom-14 tile (scale 4) at the raster's centre, decoded."""
    x, y = _centre_xy(Z_NATIVE + 2)
    response = client.get(
        f"/cog/tiles/WebMercatorQuad/{Z_NATIVE + 2}/{x}/{y}.png",
        params={"url": str(path), **params},
    )
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content))), response.headers


@pytest.mark.parametrize("name", ["gray.tif", "rgb.tif"])
def test_uint8_inputs_are_super_resolved(client, name):
    test_client, data = client
    image, headers = sr_tile(test_client, data / name)
    assert headers["X-SR-Mode"] == "fast"
    assert headers["X-SR-Scale"] == "4"
    assert image.shape[:2] == (256, 256)


def test_uint16_four_band_input_keeps_its_dtype_and_range(client):
    test_client, data = client
    response_npy = test_client.get(
        "/cog/tiles/WebMercatorQuad/14/" + "/".join(map(str, _centre_xy(14))) + ".npy",
        params={"url": str(data / "rgbn16.tif")},
    )
    assert response_npy.headers["X-SR-Mode"] == "fast"
    array = np.load(io.BytesIO(response_npy.content))
    assert array.dtype == np.uint16
    assert array.shape == (5, 256, 256)  # 4 bands + mask
    with rasterio.open(data / "rgbn16.tif") as src:
        full = src.read()
    assert full.min() - 50 <= array[:4].min() and array[:4].max() <= full.max() + 50


def _centre_xy(z: int) -> tuple[int, int]:
    lon, lat = WEB_MERCATOR.lnglat(ORIGIN[0] + SIZE * RES / 2, ORIGIN[1] - SIZE * RES / 2)
    tile = WEB_MERCATOR.tile(lon, lat, z)
    return tile.x, tile.y


def test_nodata_does_not_bleed_into_valid_pixels(client):
    test_client, data = client
    image, headers = sr_tile(test_client, data / "edge.tif")
    assert headers["X-SR-Mode"] == "fast"
    alpha, rgb = image[..., 3], image[..., :3].astype(int)
    assert (alpha == 0).any() and (alpha == 255).any()  # the tile straddles the nodata edge
    assert rgb[alpha == 255].min() >= 40  # valid pixels never pulled towards the 0 fill


def test_paletted_raster_is_never_super_resolved_by_auto(client):
    test_client, data = client
    _, headers = sr_tile(test_client, data / "classes.tif")
    assert headers["X-SR-Mode"] == "off"
