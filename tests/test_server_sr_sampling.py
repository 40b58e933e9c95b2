"""SR tiles sample the source's own pixel grid at the tile's pixel centres (one resampling).

Through real servers, on small sources derived from the sample scene (UTM, 30 m) and
written to tmp: a UTM and an EPSG:4326 source, each at an integer and a non-integer scale
(the EPSG:4326 ones are integer along x; Web Mercator stretches y by 1 / cos(lat)).
- seams: four 256-px tiles at z, stitched, equal the 512-px tile at z-1 (<= 2 DN) for
  ``bicubic``, and ``fast``/``diffusion`` of a small untrained HNDSR (the sampling path,
  noise and margins are the real ones; seams do not depend on the weights);
- ``sr=bicubic`` is TiTiler's cubic overzoom up to the kernel's constant: on tiles fully
  inside the data, no more than 0.1 dB below it against the fine scene's own tiles;
- a tile half outside the data keeps the source's mask and shows no nodata bleeding.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
import torch
from fastapi import FastAPI
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window

from sr_engine.model import HNDSR, HNDSRConfig, HNDSRUpscaler
from tests.plugins.server import ServerPool
from tests.test_server_seams import SCENE, seam_difference
from tileserver.app import create_app

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
CROP = 1000  # px of the 30 m scene around its centre


def create_small_hndsr_app() -> FastAPI:
    """The real app with a small seeded untrained HNDSR as its model (uvicorn factory)."""
    torch.manual_seed(0)
    cfg = HNDSRConfig(feats=8, blocks=2, hidden=16, ae_width=8, refiner_width=8)
    return create_app(upscaler=HNDSRUpscaler(HNDSR(cfg), "hndsr-small-untrained"))


def write(path: Path, data: np.ndarray, crs: object, transform: object) -> None:
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "tiled": True,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def resample(src: rasterio.DatasetReader, window: Window, crs: object, res: float) -> tuple:
    """The window of ``src`` area-averaged onto a north-up grid of ``res`` in ``crs``."""
    bounds = transform_bounds(src.crs, crs, *src.window_bounds(window))
    width = int((bounds[2] - bounds[0]) / res)
    height = int((bounds[3] - bounds[1]) / res)
    transform = from_origin(bounds[0], bounds[3], res, res)
    out = np.zeros((3, height, width), dtype=np.uint8)
    reproject(
        src.read(window=window),
        out,
        src_transform=src.window_transform(window),
        src_crs=src.crs,
        dst_transform=transform,
        dst_crs=crs,
        src_nodata=0,
        dst_nodata=0,
        resampling=Resampling.average,
    )
    return out, transform


@pytest.fixture(scope="module")
def sources(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fine (30 m UTM crop), its 2x/4x area averages, and the four seam sources."""
    data = tmp_path_factory.mktemp("sampling-data")
    paths = {}
    with rasterio.open(sample_scene / SCENE) as src:
        window = Window((src.width - CROP) // 2, (src.height - CROP) // 2, CROP, CROP)
        lon0, lat0, lon1, lat1 = transform_bounds(src.crs, "EPSG:4326", *src.window_bounds(window))
        cos_lat = float(np.cos(np.radians((lat0 + lat1) / 2)))
        fine = src.read(window=window)
        paths["fine"] = data / "fine.tif"
        write(paths["fine"], fine, src.crs, src.window_transform(window))
        for factor in (2, 4):
            coarse, transform = resample(src, window, src.crs, 30.0 * factor)
            paths[f"coarse{factor}"] = data / f"coarse{factor}.tif"
            write(paths[f"coarse{factor}"], coarse, src.crs, transform)
        z13_ground = WEB_MERCATOR.matrix(13).cellSize * cos_lat
        utm2, transform = resample(src, window, src.crs, 2 * z13_ground)
        paths["utm-2"] = data / "utm-2.tif"
        write(paths["utm-2"], utm2, src.crs, transform)
        degree_m = 2 * np.pi * 6378137.0 / 360
        for name, scale in (("4326-x2", 2.0), ("4326-x3.3", 3.3)):
            res = scale * WEB_MERCATOR.matrix(14).cellSize / degree_m
            out, transform = resample(src, window, "EPSG:4326", res)
            paths[name] = data / f"{name}.tif"
            write(paths[name], out, "EPSG:4326", transform)
    paths["utm-3.47"] = paths["fine"]
    return paths


@pytest.fixture(scope="module")
def server(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server with the small model (``sr=bicubic`` and ``sr=off`` need no model)."""
    pool = ServerPool(tmp_path_factory.mktemp("sampling-servers"))
    env = {"HNDSR_DATA_DIR": str(sources["fine"].parent), "HNDSR_SR_LATENCY_BUDGET_MS": "0"}
    yield pool.start(env, app="tests.test_server_sr_sampling:create_small_hndsr_app", timeout_s=180)
    pool.close()


def fetcher(client: httpx.Client, path: Path, **params: object):
    def fetch(z: int, x: int, y: int, tilesize: int = 256) -> tuple[np.ndarray, dict]:
        response = client.get(
            f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
            params={"url": str(path), "tilesize": tilesize, **params},
        )
        assert response.status_code == 200, response.text
        return np.asarray(Image.open(io.BytesIO(response.content))).astype(int), response.headers

    return fetch


SEAM_CASES = [
    pytest.param("utm-3.47", 14, id="utm-non-integer"),
    pytest.param("utm-2", 13, id="utm-integer"),
    pytest.param("4326-x3.3", 14, id="epsg4326-non-integer"),
    pytest.param("4326-x2", 14, id="epsg4326-integer"),
]


@pytest.mark.parametrize("mode", ["bicubic", "fast", "diffusion"])
@pytest.mark.parametrize(("name", "z"), SEAM_CASES)
def test_tiles_sampled_on_the_source_grid_have_no_seams(server, sources, name, z, mode):
    with httpx.Client(base_url=server, timeout=300) as client:
        fetch = fetcher(client, sources[name], sr=mode)
        worst, headers = seam_difference(fetch, sources[name], z)
    scale = [float(s) for s in headers["x-sr-scale"].split(",")]
    print(f"{name} z{z} {mode}: scale {scale}, worst seam {worst} DN")
    assert headers["x-sr-mode"] == mode
    assert worst <= 2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def inner_tiles(path: Path, z: int) -> list[morecantile.Tile]:
    with rasterio.open(path) as src:
        lon0, lat0, lon1, lat1 = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    tiles = list(WEB_MERCATOR.tiles(lon0, lat0, lon1, lat1, [z]))
    return tiles


@pytest.mark.parametrize("factor", [2, 4])
def test_sr_bicubic_is_titiler_cubic_overzoom(server, sources, factor):
    """Against the fine scene's own tiles at its native zoom (12), on tiles fully inside."""
    z = 12
    scores: dict[str, list[float]] = {"bicubic": [], "titiler-cubic": []}
    with httpx.Client(base_url=server, timeout=120) as client:
        reference = fetcher(client, sources["fine"], sr="off")
        bicubic = fetcher(client, sources[f"coarse{factor}"], sr="bicubic")
        cubic = fetcher(
            client, sources[f"coarse{factor}"], sr="off", resampling="cubic", reproject="cubic"
        )
        for tile in inner_tiles(sources["fine"], z):
            ref, _ = reference(z, tile.x, tile.y)
            ours, headers = bicubic(z, tile.x, tile.y)
            theirs, _ = cubic(z, tile.x, tile.y)
            if not all((img[..., 3] == 255).all() for img in (ref, ours, theirs)):
                continue
            assert headers["x-sr-mode"] == "bicubic"
            scores["bicubic"].append(psnr(ours[..., :3], ref[..., :3]))
            scores["titiler-cubic"].append(psnr(theirs[..., :3], ref[..., :3]))
    assert len(scores["bicubic"]) >= 2, "too few tiles fully inside the data"
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    print(f"x{factor}: {len(scores['bicubic'])} tiles, PSNR {means}")
    assert means["bicubic"] >= means["titiler-cubic"] - 0.1


@pytest.mark.parametrize("mode", ["bicubic", "fast"])
def test_a_tile_half_outside_the_data_keeps_its_mask_without_bleeding(server, sources, mode):
    path = sources["4326-x3.3"]
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
    tile = WEB_MERCATOR.tile(left + 1e-4, (bottom + top) / 2, 14)
    with httpx.Client(base_url=server, timeout=120) as client:
        ours, headers = fetcher(client, path, sr=mode)(14, tile.x, tile.y)
        plain, _ = fetcher(client, path, sr="off")(14, tile.x, tile.y)
        cubic, _ = fetcher(client, path, sr="off", resampling="cubic", reproject="cubic")(
            14, tile.x, tile.y
        )
    assert headers["x-sr-mode"] == mode
    valid, plain_valid = ours[..., 3] == 255, plain[..., 3] == 255
    assert 0.1 < valid.mean() < 0.9, "the tile should be partly inside the data"
    disagree = float((valid != plain_valid).mean())
    both = valid & (cubic[..., 3] == 255)
    left_of = np.zeros_like(both)
    left_of[:, 6:] = both[:, :-6]
    edge = both & ~left_of  # valid pixels within 6 px of the data's west edge
    error = np.abs(ours[..., :3] - cubic[..., :3])
    bias = float((ours[..., :3] - cubic[..., :3])[edge].mean())
    print(
        f"{mode}: mask disagreement with TiTiler {disagree:.4f}, edge max error "
        f"{error[edge].max()} DN, edge bias {bias:.2f} DN"
    )
    assert disagree < 0.01
    assert edge.sum() > 100
    # nodata (0) bleeding in would darken the edge by tens of DN
    assert abs(bias) < 3 and error[edge].max() <= 40
