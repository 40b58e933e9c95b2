"""Real clients against a real server: GDAL's WMTS driver, a GDAL TMS minidriver XML,
OWSLib; and the STAC route against the COG route."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import httpx
import numpy as np
import pytest
from morecantile import tms
from owslib.wmts import WebMapTileService
from PIL import Image
from rio_tiler.io import Reader

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8"
LAYER = "LC08_L1TP_224078_20200518_rgb8_WebMercatorQuad_default"
WEB_MERCATOR = tms.get("WebMercatorQuad")
Z = 14  # two zooms past the scene's native zoom: super-resolved

# Runs in a child process: GDAL_SKIP=WMS,WMTS (set by the app when a test builds one
# in-process) would disable the very drivers under test here.
GDAL_READ = """
import json, sys
import numpy as np, rasterio
from rasterio.windows import Window
source, left, top = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with rasterio.open(source) as src:
    col, row = ~src.transform * (left + src.res[0] / 2, top - src.res[1] / 2)
    data = src.read(window=Window(int(col), int(row), 256, 256))
np.save(sys.argv[4], data)
print(json.dumps({"count": src.count, "res": src.res, "crs": str(src.crs)}))
"""


def gdal_read(source: str, left: float, top: float, out: Path) -> tuple[np.ndarray, dict]:
    env = {k: v for k, v in os.environ.items() if k != "GDAL_SKIP"}
    result = subprocess.run(
        [sys.executable, "-c", GDAL_READ, source, str(left), str(top), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out), json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cog(sample_scene: Path) -> str:
    return str(sample_scene / f"{SCENE}.tif")


@pytest.fixture(scope="module")
def centre(cog: str):
    with Reader(cog) as src:
        lon0, lat0, lon1, lat1 = src.get_geographic_bounds("EPSG:4326")
    return WEB_MERCATOR.tile((lon0 + lon1) / 2, (lat0 + lat1) / 2, Z)


def served_tile(server_url: str, cog: str, tile) -> np.ndarray:
    response = httpx.get(
        f"{server_url}/cog/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        params={"url": cog},
        timeout=60,
    )
    assert response.headers["X-SR-Mode"] == "fast"  # auto: the shipped model's default mode
    return np.moveaxis(np.asarray(Image.open(io.BytesIO(response.content))), -1, 0)


@pytest.mark.parametrize("layer_id", ["titiler", "stem"])
def test_gdal_wmts_driver_reads_sr_tiles(server_url, cog, centre, tmp_path, layer_id):
    """By TiTiler's layer id (``<url>_<tms>_default``) and by the stem id of earlier releases."""
    capabilities = f"{server_url}/cog/WMTSCapabilities.xml?{urlencode({'url': cog})}"
    layer = f"{cog}_WebMercatorQuad_default" if layer_id == "titiler" else LAYER
    source = f"WMTS:{capabilities},layer={layer},tilematrixset=WebMercatorQuad,zoom_level={Z}"
    bounds = WEB_MERCATOR.xy_bounds(centre)
    data, meta = gdal_read(source, bounds.left, bounds.top, tmp_path / "wmts.npy")
    assert meta["res"][0] == pytest.approx(WEB_MERCATOR.matrix(Z).cellSize)
    np.testing.assert_array_equal(data[:3], served_tile(server_url, cog, centre)[:3])


def test_gdal_tms_minidriver_reads_sr_tiles(server_url, cog, centre, tmp_path):
    template = f"{server_url}/cog/tiles/WebMercatorQuad/${{z}}/${{x}}/${{y}}.png?" + urlencode(
        {"url": cog}
    )
    extent = 20037508.342789244
    xml = f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{escape(template)}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>{-extent}</UpperLeftX><UpperLeftY>{extent}</UpperLeftY>
    <LowerRightX>{extent}</LowerRightX><LowerRightY>{-extent}</LowerRightY>
    <TileLevel>{Z}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>4</BandsCount>
  <ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>
</GDAL_WMS>"""
    (tmp_path / "tms.xml").write_text(xml)
    bounds = WEB_MERCATOR.xy_bounds(centre)
    data, meta = gdal_read(str(tmp_path / "tms.xml"), bounds.left, bounds.top, tmp_path / "t.npy")
    assert meta["count"] == 4
    np.testing.assert_array_equal(data, served_tile(server_url, cog, centre))


def test_owslib_parses_capabilities_and_fetches_a_tile(server_url, cog, centre):
    wmts = WebMapTileService(f"{server_url}/cog/WMTSCapabilities.xml?{urlencode({'url': cog})}")
    assert LAYER in wmts.contents
    assert f"{cog}_WebMercatorQuad_default" in wmts.contents  # TiTiler's id
    layer = wmts.contents[LAYER]
    assert "super-resolved" in layer.abstract
    assert set(wmts.tilematrixsets) == {"WebMercatorQuad", "WorldCRS84Quad"}
    limits = layer.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits
    assert max(int(z) for z in limits) == 15  # scale 6.96 at z15, 13.9 at z16
    tile = wmts.gettile(
        layer=LAYER,
        tilematrixset="WebMercatorQuad",
        tilematrix=str(Z),
        row=centre.y,
        column=centre.x,
        format="image/png",
    )
    image = np.moveaxis(np.asarray(Image.open(io.BytesIO(tile.read()))), -1, 0)
    np.testing.assert_array_equal(image, served_tile(server_url, cog, centre))


def test_stac_tile_equals_the_cog_tile_of_its_asset(server_url, sample_scene, cog, centre):
    item = str(sample_scene / f"{SCENE}.json")
    path = f"/tiles/WebMercatorQuad/{centre.z}/{centre.x}/{centre.y}.png"
    stac = httpx.get(
        f"{server_url}/stac{path}", params={"url": item, "assets": "visual"}, timeout=60
    )
    assert stac.status_code == 200, stac.text
    assert stac.headers["X-SR-Mode"] == "fast"
    stac_image = np.moveaxis(np.asarray(Image.open(io.BytesIO(stac.content))), -1, 0)
    np.testing.assert_array_equal(stac_image, served_tile(server_url, cog, centre))


def test_stac_tilejson_advertises_the_sr_zooms(server_url, sample_scene, cog):
    item = str(sample_scene / f"{SCENE}.json")
    stac = httpx.get(
        f"{server_url}/stac/WebMercatorQuad/tilejson.json", params={"url": item, "assets": "visual"}
    ).json()
    plain = httpx.get(f"{server_url}/cog/WebMercatorQuad/tilejson.json", params={"url": cog}).json()
    assert stac["maxzoom"] == plain["maxzoom"]
    assert "super-resolved" in stac["description"]
