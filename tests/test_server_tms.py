"""Every tile matrix set TiTiler serves (morecantile's 13), through a real server: tilejson,
tileset, map.html and tiles at and past native zoom; SR seams in a non-Mercator TMS.

Each TMS gets a COG cut from the sample scene (512 x 512 px, 30 m) placed inside its area,
in the UTM zone of that place, so every request reprojects between two CRSs. The UTM31 cut
lies just east of zone 31, in zone 32: its pixel grid is turned by about 2.5 degrees
against the TMS grid.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window
from rio_tiler.io import Reader

from cogs.cog import write_cog
from tests.plugins.server import ServerPool

SCENE = "landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
CUT = Window(760, 674, 512, 512)  # valid pixels only, away from the scene's nodata collar
PLACES = {
    "CDB1GlobalGrid": (-54.5, -25.3),
    "CanadianNAD83_LCC": (-75.7, 45.4),
    "EuropeanETRS89_LAEAQuad": (10.0, 52.0),
    "GNOSISGlobalGrid": (-54.5, -25.3),
    "LINZAntarticaMapTilegrid": (166.7, -77.8),
    "NZTM2000Quad": (174.8, -41.3),
    "UPSAntarcticWGS84Quad": (166.7, -77.8),
    "UPSArcticWGS84Quad": (-40.0, 75.0),
    "UTM31WGS84Quad": (6.5, 45.0),
    "WGS1984Quad": (-54.5, -25.3),
    "WebMercatorQuad": (-54.5, -25.3),
    "WorldCRS84Quad": (-54.5, -25.3),
    "WorldMercatorWGS84Quad": (-54.5, -25.3),
}
"""lon, lat of each TMS's COG: inside the TMS's area of use."""
XML_NS = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
WMTS_TMS = ["WebMercatorQuad", "UTM31WGS84Quad", "EuropeanETRS89_LAEAQuad"]


def utm_crs(lon: float, lat: float) -> str:
    zone = int((lon + 180) // 6) + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


@pytest.fixture(scope="module")
def tms_data(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with ``<tms>.tif`` for each of the 13 TMS."""
    data = tmp_path_factory.mktemp("tms-data")
    with rasterio.open(sample_scene / SCENE) as src:
        cut = src.read(window=CUT)
    assert (cut > 0).all(), "the cut must hold valid pixels only"
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    for name, (lon, lat) in PLACES.items():
        crs = utm_crs(lon, lat)
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        half = CUT.width / 2 * 30.0
        transform = from_origin(x - half, y + half, 30.0, 30.0)
        write_cog(cut, {"crs": crs, "transform": transform}, data / f"{name}.tif", colorinterp=rgb)
    assert len(morecantile.tms.list()) == 13 and set(PLACES) == set(morecantile.tms.list())
    return data


@pytest.fixture(scope="module")
def server(tms_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pool = ServerPool(tmp_path_factory.mktemp("tms-server"))
    yield pool.start({"HNDSR_DATA_DIR": str(tms_data), "HNDSR_WMTS_TMS": ",".join(WMTS_TMS)})
    pool.close()


def rgba(response: httpx.Response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


@pytest.mark.parametrize("tms_id", sorted(PLACES))
def test_every_tms_serves_metadata_and_tiles_at_and_past_native_zoom(server, tms_data, tms_id):
    tms = morecantile.tms.get(tms_id)
    url = str(tms_data / f"{tms_id}.tif")
    with httpx.Client(base_url=server, timeout=120) as client:
        tilejson = client.get(f"/cog/{tms_id}/tilejson.json", params={"url": url, "tilesize": 256})
        assert tilejson.status_code == 200, tilejson.text
        tileset = client.get(f"/cog/tiles/{tms_id}", params={"url": url})
        assert tileset.status_code == 200, tileset.text
        assert client.get(f"/cog/{tms_id}/map.html", params={"url": url}).status_code == 200

        maxzoom = tilejson.json()["maxzoom"]
        native = max(z for z in range(tms.minzoom, maxzoom + 1) if scale(tms, url, z) <= 1.1)
        assert maxzoom > native, "no SR zoom advertised"
        rels = {link["rel"] for link in tileset.json()["links"]}
        assert "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme" in rels
        assert int(tileset.json()["tileMatrixSetLimits"][-1]["tileMatrix"]) == maxzoom

        lon, lat = PLACES[tms_id]
        for z, mode in ((native, "off"), (maxzoom, "bicubic")):
            tile = tms.tile(lon, lat, z)
            response = client.get(
                f"/cog/tiles/{tms_id}/{z}/{tile.x}/{tile.y}.png",
                params={"url": url, "sr": "bicubic", "tilesize": 256},
            )
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "image/png"
            assert response.headers["x-sr-mode"] == mode
            assert (rgba(response)[..., 3] > 0).mean() > 0.2, "the tile shows no data"


def scale(tms: morecantile.TileMatrixSet, url: str, z: int) -> float:
    """Effective scale of a 256-px tile at zoom z: native resolution / tile resolution."""
    with Reader(url, tms=tms) as src:
        affine, _, _ = src._dst_geom_in_tms_crs
    matrix = tms.matrix(z)
    return abs(affine[0]) / (matrix.cellSize * matrix.tileWidth / 256)


def test_wmts_lists_the_tms_of_the_setting(server, tms_data):
    url = str(tms_data / "UTM31WGS84Quad.tif")
    response = httpx.get(f"{server}/cog/WMTSCapabilities.xml", params={"url": url}, timeout=60)
    assert response.status_code == 200, response.text
    root = ElementTree.fromstring(response.content)
    matrix_sets = root.findall("wmts:Contents/wmts:TileMatrixSet/ows:Identifier", XML_NS)
    assert {element.text for element in matrix_sets} == set(WMTS_TMS)
    links = root.findall(
        "wmts:Contents/wmts:Layer/wmts:TileMatrixSetLink/wmts:TileMatrixSet", XML_NS
    )
    assert {element.text for element in links} == set(WMTS_TMS)


@pytest.mark.parametrize("mode", ["bicubic", "fast"])
def test_sr_tiles_in_a_utm_tms_have_no_seams(server, tms_data, mode):
    """Four 256-px SR tiles at z, stitched, equal the 512-px tile at z-1 (<= 2 DN)."""
    tms = morecantile.tms.get("UTM31WGS84Quad")
    url = str(tms_data / "UTM31WGS84Quad.tif")
    z = 14  # scale ~3.1 at 256 px: two zooms past native
    parent = tms.tile(*PLACES["UTM31WGS84Quad"], z - 1)

    def fetch(z: int, x: int, y: int, tilesize: int) -> httpx.Response:
        response = httpx.get(
            f"{server}/cog/tiles/UTM31WGS84Quad/{z}/{x}/{y}.png",
            params={"url": url, "tilesize": tilesize, "sr": mode},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-sr-mode"] == mode
        return response

    big_response = fetch(z - 1, parent.x, parent.y, 512)
    assert float(big_response.headers["x-sr-scale"].split(",")[0]) > 2.5
    big = rgba(big_response)
    stitched = np.zeros_like(big)
    for dy in (0, 1):
        for dx in (0, 1):
            tile = rgba(fetch(z, 2 * parent.x + dx, 2 * parent.y + dy, 256))
            stitched[dy * 256 : (dy + 1) * 256, dx * 256 : (dx + 1) * 256] = tile
    assert (big[..., 3] == 255).all() and (stitched[..., 3] == 255).all()
    diff = np.abs(stitched[..., :3].astype(int) - big[..., :3].astype(int))
    print(f"UTM31WGS84Quad {mode}: worst seam {diff.max()} DN")
    assert diff.max() <= 2
