"""MosaicJSON through a real server: ``hndsr-tiles mosaic create`` on two adjacent COGs cut
from the sample scene, SR tiles across their boundary, the allowlist on the document and on
its COGs, the catalog."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from cogs.cog import write_cog
from tests.plugins.server import ServerPool
from tileserver.mosaic_sr import SourceGrid
from training.tilepath.server import REPO_ROOT

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
BOUNDARY_COL, TOP_ROW, HEIGHT, WIDTH = 1000, 500, 800, 500
"""The two COGs: scene columns 500..1000 (west) and 1000..1500 (east), rows 500..1300."""
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
SR_ZOOM = 14  # scale ~3.5 at 256 px


def cut(scene: rasterio.DatasetReader, col0: int, path: Path, shift_px: float = 0.0) -> None:
    """Scene columns ``col0..col0 + WIDTH``, georeferenced ``shift_px`` pixels east."""
    window = Window(col0, TOP_ROW, WIDTH, HEIGHT)
    transform = scene.window_transform(window)
    profile = {"crs": scene.crs, "transform": transform * transform.translation(shift_px, 0)}
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    write_cog(scene.read(window=window), profile, path, colorinterp=rgb)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-c", "from tileserver.cli import app; app()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def mosaic_data(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir: ``cogs/west.tif``, ``cogs/east.tif``, the whole scene and
    ``area.mosaic.json`` written by the CLI."""
    data = tmp_path_factory.mktemp("mosaic-data")
    (data / "cogs").mkdir()
    shutil.copy(sample_scene / SCENE, data / "scene.tif")
    with rasterio.open(data / "scene.tif") as scene:
        cut(scene, BOUNDARY_COL - WIDTH, data / "cogs" / "west.tif")
        cut(scene, BOUNDARY_COL, data / "cogs" / "east.tif")
    result = run_cli("mosaic", "create", str(data / "area.mosaic.json"), str(data / "cogs"))
    assert result.returncode == 0, result.stderr
    assert "2 COGs" in result.stderr
    return data


@pytest.fixture(scope="module")
def server(mosaic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pool = ServerPool(tmp_path_factory.mktemp("mosaic-server"))
    yield pool.start({"HNDSR_DATA_DIR": str(mosaic_data)})
    pool.close()


@pytest.fixture(scope="module")
def conv_server(mosaic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose model is the random deep conv stand-in (receptive field 6 LR px)."""
    pool = ServerPool(tmp_path_factory.mktemp("mosaic-conv-server"))
    yield pool.start(
        {"HNDSR_DATA_DIR": str(mosaic_data)}, app="tests.test_server_seams:create_conv_app"
    )
    pool.close()


def boundary_tile(data: Path, z: int) -> morecantile.Tile:
    """The tile at zoom z whose centre column is nearest to the COG boundary."""
    with rasterio.open(data / "scene.tif") as scene:
        x, y = scene.xy(TOP_ROW + HEIGHT // 2, BOUNDARY_COL, offset="ul")
        lon, lat = Transformer.from_crs(scene.crs, "EPSG:4326", always_xy=True).transform(x, y)
    tile = WEB_MERCATOR.tile(lon, lat, z)
    bounds = WEB_MERCATOR.xy_bounds(tile)
    mx, _ = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    assert bounds.left + 0.2 * (bounds.right - bounds.left) < mx, "boundary too near the edge"
    return tile


def get_tile(server: str, endpoint: str, url: Path, tile: morecantile.Tile, sr: str):
    response = httpx.get(
        f"{server}/{endpoint}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"url": str(url), "sr": sr},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response, np.asarray(Image.open(io.BytesIO(response.content))).astype(int)


def test_the_cli_writes_a_mosaic_of_both_cogs(mosaic_data):
    document = json.loads((mosaic_data / "area.mosaic.json").read_text())
    assets = {asset for assets in document["tiles"].values() for asset in assets}
    assert assets == {
        str(mosaic_data / "cogs" / "west.tif"),
        str(mosaic_data / "cogs" / "east.tif"),
    }
    assert run_cli("mosaic", "create", str(mosaic_data / "area.mosaic.json")).returncode == 1


def test_tilejson_advertises_sr_zooms_past_the_documents_maxzoom(server, mosaic_data):
    url = str(mosaic_data / "area.mosaic.json")
    document = json.loads(Path(url).read_text())
    tilejson = httpx.get(
        f"{server}/mosaicjson/WebMercatorQuad/tilejson.json", params={"url": url}, timeout=60
    ).json()
    assert tilejson["maxzoom"] > document["maxzoom"]
    assert "super-resolved" in tilejson["description"]


def test_mosaic_sr_tile_across_the_boundary_is_served_from_both_cogs(server, mosaic_data):
    tile = boundary_tile(mosaic_data, SR_ZOOM)
    response, image = get_tile(
        server, "mosaicjson", mosaic_data / "area.mosaic.json", tile, "bicubic"
    )
    assert response.headers["x-sr-mode"] == "bicubic"
    assert float(response.headers["x-sr-scale"]) > 3
    valid = image[..., 3] == 255
    assert valid[:, :64].all() and valid[:, -64:].all(), "both COGs fill their side"
    native = get_tile(server, "mosaicjson", mosaic_data / "area.mosaic.json", tile, "off")[1]
    assert np.abs(image[..., :3] - native[..., :3]).mean() < 20  # the same picture


@pytest.mark.parametrize(
    ("server_fixture", "sr"),
    [("server", "bicubic"), ("conv_server", "fast")],
    ids=["bicubic", "conv"],
)
def test_mosaic_sr_tile_equals_the_uncut_scenes_tile(server_fixture, sr, mosaic_data, request):
    """Both COGs are read as one window before the upscaler runs: the tile across their
    boundary is the uncut scene's (per-COG SR left 4 DN with bicubic's 2 px halo)."""
    server = request.getfixturevalue(server_fixture)
    tile = boundary_tile(mosaic_data, SR_ZOOM)
    response, mosaic = get_tile(server, "mosaicjson", mosaic_data / "area.mosaic.json", tile, sr)
    assert response.headers["x-sr-mode"] == sr
    whole = get_tile(server, "cog", mosaic_data / "scene.tif", tile, sr)[1]
    gap = int((mosaic[..., 3] != whole[..., 3]).sum())
    diff = np.abs(mosaic[..., :3] - whole[..., :3])[mosaic[..., 3] == 255].max()
    print(f"{sr}: mosaic vs uncut scene across the COG boundary: {gap} px gap, {diff} DN")
    assert gap == 0 and diff <= 2


def test_mosaic_tiles_past_the_max_scale_have_no_seams_across_the_boundary(server, mosaic_data):
    """Past ``sr_max_scale`` (z17, scale ~28): four 256-px tiles on the boundary, stitched,
    equal the one 512-px tile of their parent; all share the mosaic's intermediate grid."""
    parent = boundary_tile(mosaic_data, 16)
    url = mosaic_data / "area.mosaic.json"
    response = httpx.get(
        f"{server}/mosaicjson/tiles/WebMercatorQuad/16/{parent.x}/{parent.y}.png",
        params={"url": str(url), "sr": "bicubic", "tilesize": 512},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    big = np.asarray(Image.open(io.BytesIO(response.content))).astype(int)
    stitched = np.zeros_like(big)
    for dy in (0, 1):
        for dx in (0, 1):
            child = morecantile.Tile(2 * parent.x + dx, 2 * parent.y + dy, 17)
            response, image = get_tile(server, "mosaicjson", url, child, "bicubic")
            assert float(response.headers["x-sr-scale"]) > 8
            stitched[dy * 256 : (dy + 1) * 256, dx * 256 : (dx + 1) * 256] = image
    assert (big[..., 3] == 255).all() and (stitched[..., 3] == 255).all()
    worst = int(np.abs(stitched[..., :3] - big[..., :3]).max())
    print(f"z17 tiles across the COG boundary vs their z16 parent at 512 px: {worst} DN")
    assert worst <= 2


def test_source_grids_match_only_a_whole_pixel_apart(mosaic_data, tmp_path):
    with rasterio.open(mosaic_data / "scene.tif") as scene:
        cut(scene, BOUNDARY_COL, tmp_path / "shifted.tif", shift_px=0.5)
    grids = {}
    for name, path in [
        ("west", mosaic_data / "cogs" / "west.tif"),
        ("east", mosaic_data / "cogs" / "east.tif"),
        ("shifted", tmp_path / "shifted.tif"),
    ]:
        with rasterio.open(path) as dataset:
            grids[name] = SourceGrid.of(dataset)
    assert grids["west"].offset_of(grids["east"]) == (WIDTH, 0)
    assert grids["east"].offset_of(grids["west"]) == (-WIDTH, 0)
    assert grids["west"].offset_of(grids["shifted"]) is None


def test_cogs_on_different_grids_fall_back_to_per_cog_sr(server, mosaic_data):
    """East georeferenced half a pixel off west's grid: no single window; each COG is
    super-resolved alone, as titiler.mosaic does, and the tile is still served."""
    shifted = mosaic_data / "shifted"
    (shifted / "cogs").mkdir(parents=True)
    shutil.copy(mosaic_data / "cogs" / "west.tif", shifted / "cogs" / "west.tif")
    with rasterio.open(mosaic_data / "scene.tif") as scene:
        cut(scene, BOUNDARY_COL, shifted / "cogs" / "east.tif", shift_px=0.5)
    document = shifted / "shifted.json"
    assert run_cli("mosaic", "create", str(document), str(shifted / "cogs")).returncode == 0
    tile = boundary_tile(mosaic_data, SR_ZOOM)
    response, image = get_tile(server, "mosaicjson", document, tile, "bicubic")
    assert response.headers["x-sr-mode"] == "bicubic"
    assert image[:, :64, 3].all() and image[:, -64:, 3].all(), "both COGs fill their side"


def test_a_mosaic_outside_the_allowlist_is_403(server, sample_scene):
    response = httpx.get(
        f"{server}/mosaicjson/WebMercatorQuad/tilejson.json",
        params={"url": str(sample_scene / "elsewhere.mosaic.json")},
        timeout=60,
    )
    assert response.status_code == 403


def test_a_mosaic_naming_a_cog_outside_the_allowlist_is_403(server, mosaic_data, sample_scene):
    document = json.loads((mosaic_data / "area.mosaic.json").read_text())
    outside = str(sample_scene / SCENE)
    document["tiles"] = {quadkey: [outside] for quadkey in document["tiles"]}
    (mosaic_data / "outside.json").write_text(json.dumps(document))
    tile = boundary_tile(mosaic_data, 12)
    response = httpx.get(
        f"{server}/mosaicjson/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"url": str(mosaic_data / "outside.json")},
        timeout=60,
    )
    assert response.status_code == 403, response.text
    assert outside not in response.text


def test_the_catalog_lists_the_mosaic(server, mosaic_data):
    catalog = httpx.get(f"{server}/catalog", timeout=60).json()
    entry = next(e for e in catalog if e.get("mosaic"))
    assert entry["id"] == "area"
    assert entry["maxzoom"] > entry["native_maxzoom"]
    assert "/mosaicjson/WebMercatorQuad/tilejson.json" in entry["tilejson"]
