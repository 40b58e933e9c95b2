"""A real server on the sample scene: advertised zooms, SR tiles, plain tiles, errors."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from fastapi import FastAPI
from fastapi.testclient import TestClient
from morecantile import tms
from PIL import Image
from rasterio.warp import calculate_default_transform
from rio_tiler.io import Reader
from titiler.core.factory import TilerFactory

from tests.plugins.server import ServerPool

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
WEB_MERCATOR = tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def cog(sample_scene: Path) -> str:
    return str(sample_scene / SCENE)


def native_res_mercator(path: str) -> float:
    with rasterio.open(path) as src:
        affine, _, _ = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds
        )
    return max(abs(affine.a), abs(affine.e))


def scale_at(res: float, z: int, tilesize: int) -> float:
    return res / (WEB_MERCATOR.matrix(z).cellSize * 256 / tilesize)


def centre_tile(path: str, z: int):
    with Reader(path) as src:
        lon0, lat0, lon1, lat1 = src.get_geographic_bounds("EPSG:4326")
    return WEB_MERCATOR.tile((lon0 + lon1) / 2, (lat0 + lat1) / 2, z)


def png(response: httpx.Response) -> np.ndarray:
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def get_tile(base: str, path: str, z: int, x: int, y: int, **params) -> httpx.Response:
    url = f"{base}/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    return httpx.get(url, params={"url": path, **params}, timeout=60)


@pytest.mark.parametrize("tilesize", [None, 256, 512])
def test_tilejson_maxzoom_is_deepest_zoom_with_scale_at_most_8(server_url, cog, tilesize):
    params = {"url": cog} if tilesize is None else {"url": cog, "tilesize": tilesize}
    body = httpx.get(f"{server_url}/cog/WebMercatorQuad/tilejson.json", params=params).json()
    res = native_res_mercator(cog)
    size = tilesize or 512  # TiTiler's tilejson advertises 512-px tiles by default
    assert scale_at(res, body["maxzoom"], size) <= 8 < scale_at(res, body["maxzoom"] + 1, size)
    assert f"tilesize={size}" in body["tiles"][0]
    assert "super-resolved" in body["description"]


@pytest.fixture(scope="module")
def past_native(cog: str):
    """The centre tile two zooms past TiTiler's native maxzoom."""
    with Reader(cog) as src:
        return centre_tile(cog, src.maxzoom + 2)


@pytest.fixture(scope="module")
def model_version(server_url) -> str:
    """Version of the model the default server loaded (the shipped checkpoint)."""
    model = httpx.get(f"{server_url}/readyz").json()["model"]
    assert model["loaded"], model
    return model["version"]


@pytest.fixture(scope="module")
def server_without_model(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server whose checkpoint is missing: it must still serve, with bicubic."""
    pool = ServerPool(tmp_path_factory.mktemp("no-model"))
    missing = tmp_path_factory.mktemp("model") / "missing.safetensors"
    yield pool.start({"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_MODEL_PATH": str(missing)})
    pool.close()


def test_sr_tile_two_zooms_past_native_is_a_bicubic_png_with_its_scale(
    server_url, cog, past_native
):
    response = get_tile(server_url, cog, past_native.z, past_native.x, past_native.y, sr="bicubic")
    assert response.status_code == 200
    assert png(response).shape[:2] == (256, 256)
    assert response.headers["X-SR-Mode"] == "bicubic"
    assert response.headers["X-SR-Model"] == "bicubic-1"
    expected = scale_at(native_res_mercator(cog), past_native.z, 256)
    assert float(response.headers["X-SR-Scale"]) == pytest.approx(expected, rel=0.01)


def test_auto_uses_the_shipped_models_default_mode(server_url, cog, past_native, model_version):
    response = get_tile(server_url, cog, past_native.z, past_native.x, past_native.y)
    assert response.status_code == 200
    assert png(response).shape[:2] == (256, 256)
    assert response.headers["X-SR-Mode"] == "fast"
    assert response.headers["X-SR-Model"] == model_version


def test_auto_without_a_model_is_bicubic(server_without_model, cog, past_native):
    response = get_tile(server_without_model, cog, past_native.z, past_native.x, past_native.y)
    assert response.status_code == 200
    assert response.headers["X-SR-Mode"] == "bicubic"
    assert response.headers["X-SR-Model"] == "bicubic-1"


def test_tile_at_scale_up_to_min_scale_equals_titilers_own(server_url, cog):
    with Reader(cog) as src:
        z = src.maxzoom
    assert scale_at(native_res_mercator(cog), z, 256) <= 1.1
    tile = centre_tile(cog, z)
    response = get_tile(server_url, cog, z, tile.x, tile.y)
    assert response.headers["X-SR-Mode"] == "off"
    assert response.headers["X-SR-Model"] == "none"

    plain = FastAPI()
    plain.include_router(TilerFactory().router)
    with TestClient(plain) as client:
        reference = client.get(
            f"/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png", params={"url": cog}
        )
    np.testing.assert_array_equal(png(response), png(reference))


def test_tile_deeper_than_maxzoom_is_served_and_says_what_was_done(server_url, cog):
    tilejson = httpx.get(
        f"{server_url}/cog/WebMercatorQuad/tilejson.json", params={"url": cog, "tilesize": 256}
    ).json()
    z = tilejson["maxzoom"] + 2
    tile = centre_tile(cog, z)
    response = get_tile(server_url, cog, z, tile.x, tile.y)
    assert response.status_code == 200
    assert png(response).shape[:2] == (256, 256)
    assert response.headers["X-SR-Mode"] == "fast"  # at the maximum scale, then bicubic
    expected = scale_at(native_res_mercator(cog), z, 256)
    assert expected > 8
    assert float(response.headers["X-SR-Scale"]) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(
    "path",
    [
        "/cog/tiles/WebMercatorQuad/3/8/1.png",  # x beyond the 8x8 matrix
        "/cog/tiles/WebMercatorQuad/3/1/-1.png",  # negative y
        "/cog/tiles/WebMercatorQuad/25/1/1.png",  # deeper than the TMS
        "/cog/tiles/WebMercatorQuad/-1/0/0.png",
        "/cog/tiles/NoSuchTMS/3/1/1.png",
        "/cog/tiles/WebMercatorQuad/14/0/0.png",  # a valid tile outside the data
        "/cog/tiles/WorldMercatorWGS84Quad/14/0/0.png",  # a TMS this server does not offer
    ],
)
def test_bad_tile_requests_are_4xx(server_url, cog, path):
    response = httpx.get(f"{server_url}{path}", params={"url": cog})
    assert 400 <= response.status_code < 500, response.text


def test_model_mode_without_a_model_is_503_with_retry_after(server_without_model, cog, past_native):
    z, x, y = past_native.z, past_native.x, past_native.y
    response = get_tile(server_without_model, cog, z, x, y, sr="fast")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0


def test_sr_off_gives_a_plain_tile_past_native(server_url, cog, past_native):
    response = get_tile(server_url, cog, past_native.z, past_native.x, past_native.y, sr="off")
    assert response.status_code == 200
    assert response.headers["X-SR-Mode"] == "off"


def test_cors_exposes_the_sr_headers(server_url, cog):
    with Reader(cog) as src:
        z = src.maxzoom + 1
    tile = centre_tile(cog, z)
    response = httpx.get(
        f"{server_url}/cog/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png",
        params={"url": cog},
        headers={"Origin": "https://maps.example.org"},
    )
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"x-sr-mode", "x-sr-scale", "x-sr-model", "x-cache", "etag"} <= exposed


def test_catalog_lists_the_sample_scene_with_its_zooms(server_url, cog):
    entries = {e["url"]: e for e in httpx.get(f"{server_url}/catalog").json()}
    entry = entries[cog]
    with Reader(cog) as src:
        assert entry["native_maxzoom"] == src.maxzoom
    assert entry["maxzoom"] > entry["native_maxzoom"]
    assert httpx.get(entry["tilejson"]).json()["maxzoom"] == entry["maxzoom"]


def test_readyz_names_the_missing_model_as_degraded(server_without_model):
    response = httpx.get(f"{server_without_model}/readyz")
    assert response.status_code == 200
    assert "model" in response.json()["degraded"]


def test_readyz_is_ready_with_the_shipped_model(server_url, model_version):
    body = httpx.get(f"{server_url}/readyz").json()
    assert body["degraded"] == []
    assert body["model"]["version"] == model_version


def test_metrics_exposes_request_durations(server_url):
    httpx.get(f"{server_url}/healthz")
    text = httpx.get(f"{server_url}/metrics").text
    assert 'hndsr_http_request_duration_seconds_count{route="/healthz",status="200"}' in text
