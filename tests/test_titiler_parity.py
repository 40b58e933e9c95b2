"""A TiTiler user changes only the host name: the same requests to this server and to
``titiler.application`` 2.4 (a real uvicorn server started here, on the same files) give
the same status, content type and bytes, at or below native zoom and with ``sr=off``.

Every request of both factories (/cog, /stac) and of the service routes is listed once in
``REQUESTS``; the documented differences are listed once in ``KNOWN_DIFFERENCES`` with the
part of the answer that is still compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import morecantile
import pytest

from tests.plugins.server import ServerPool

SCENE = "landsat8/LC08_L1TP_224078_20200518"
CENTRE = (-54.535, -25.34)
NATIVE_ZOOM = 12  # WebMercatorQuad, 256 px: scale 0.87 (plain TiTiler tiles up to here)
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
FEATURE = {
    "type": "Feature",
    "properties": {},
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [[-54.6, -25.4], [-54.45, -25.4], [-54.45, -25.28], [-54.6, -25.28], [-54.6, -25.4]]
        ],
    },
}
BBOX = "-54.6,-25.4,-54.45,-25.28"


def tile(z: int, dx: int = 0) -> str:
    t = WEB_MERCATOR.tile(*CENTRE, z)
    return f"{z}/{t.x + dx}/{t.y}"


def tile_in(tms_id: str, z: int) -> str:
    t = morecantile.tms.get(tms_id).tile(*CENTRE, z)
    return f"{z}/{t.x}/{t.y}"


@dataclass(frozen=True)
class Request:
    """One request sent to both servers; ``url``/``item`` name the sample COG/STAC item."""

    id: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str | None = "cog"  # cog | cog16 | item | None
    method: str = "GET"
    body: dict | None = None


T = "/cog/tiles/WebMercatorQuad"
REQUESTS = [
    # /cog: metadata
    Request("cog-info", "/cog/info"),
    Request("cog-info-geojson", "/cog/info.geojson"),
    Request("cog-statistics", "/cog/statistics"),
    Request("cog-statistics-bidx-bins", "/cog/statistics", {"bidx": 1, "histogram_bins": 8}),
    Request("cog-statistics-expression", "/cog/statistics", {"expression": "b1/b2"}),
    Request("cog-statistics-post", "/cog/statistics", method="POST", body=FEATURE),
    Request("cog-point", f"/cog/point/{CENTRE[0]},{CENTRE[1]}"),
    Request("cog-validate", "/cog/validate"),
    Request("cog-stac", "/cog/stac", {"datetime": "2020-05-18T13:00:00Z"}),
    Request("cog-viewer", "/cog/viewer", source=None),
    Request("cog-tilesets", "/cog/tiles"),
    Request("cog-tileset", "/cog/tiles/WebMercatorQuad"),
    Request("cog-tilejson", "/cog/WebMercatorQuad/tilejson.json"),
    Request("cog-tilejson-256", "/cog/WorldCRS84Quad/tilejson.json", {"tilesize": 256}),
    Request("cog-map-html", "/cog/WebMercatorQuad/map.html"),
    Request("cog-wmts", "/cog/WMTSCapabilities.xml"),
    # /cog: images of every format
    Request("cog-preview-png", "/cog/preview.png", {"max_size": 256}),
    Request("cog-preview-jpg", "/cog/preview.jpg", {"max_size": 256}),
    Request("cog-preview-webp", "/cog/preview.webp", {"max_size": 256}),
    Request("cog-preview-tif", "/cog/preview.tif", {"max_size": 128}),
    Request("cog-preview-npy", "/cog/preview.npy", {"max_size": 128}),
    Request("cog-preview-jp2", "/cog/preview.jp2", {"max_size": 128}),
    Request("cog-preview-pngraw", "/cog/preview.pngraw", {"max_size": 128}),
    Request("cog-bbox", f"/cog/bbox/{BBOX}.png", {"max_size": 256}),
    Request("cog-bbox-size-crs", f"/cog/bbox/{BBOX}/200x150.jpeg", {"dst_crs": "EPSG:3857"}),
    Request("cog-feature", "/cog/feature.png", {"max_size": 256}, method="POST", body=FEATURE),
    Request(
        "cog-map-ogc",
        "/cog/map",
        {"bbox": BBOX, "width": 256, "height": 200, "crs": "EPSG:4326", "f": "png"},
    ),
    # /cog: tiles at and below native zoom, with every family of parameters
    Request("tile-native", f"{T}/{tile(NATIVE_ZOOM)}.png"),
    Request("tile-below-native", f"{T}/{tile(NATIVE_ZOOM - 1)}.png"),
    Request("tile-no-extension", f"{T}/{tile(NATIVE_ZOOM)}"),
    Request("tile-jpg", f"{T}/{tile(NATIVE_ZOOM)}.jpg"),
    Request("tile-webp", f"{T}/{tile(NATIVE_ZOOM)}.webp"),
    Request("tile-tif", f"{T}/{tile(NATIVE_ZOOM)}.tif"),
    Request("tile-npy", f"{T}/{tile(NATIVE_ZOOM)}.npy"),
    Request("tile-pngraw", f"{T}/{tile(NATIVE_ZOOM)}.pngraw"),
    Request("tile-512", f"{T}/{tile(NATIVE_ZOOM - 1)}.png", {"tilesize": 512}),
    Request(
        "tile-bidx-colormap",
        f"{T}/{tile(NATIVE_ZOOM)}.png",
        {"bidx": 1, "colormap_name": "viridis"},
    ),
    Request(
        "tile-expression-rescale",
        f"{T}/{tile(NATIVE_ZOOM)}.png",
        {"expression": "(b1-b3)/(b1+b3)", "rescale": "-1,1", "colormap_name": "rdbu"},
    ),
    Request("tile-rgb16-rescale", f"{T}/{tile(NATIVE_ZOOM)}.png", {"rescale": "0,20000"}, "cog16"),
    Request(
        "tile-algorithm-hillshade",
        f"{T}/{tile(NATIVE_ZOOM)}.png",
        {"bidx": 1, "algorithm": "hillshade", "buffer": 3},
    ),
    Request("tile-buffer-padding", f"{T}/{tile(NATIVE_ZOOM)}.png", {"buffer": 2, "padding": 2}),
    Request(
        "tile-resampling-reproject",
        f"{T}/{tile(NATIVE_ZOOM)}.png",
        {"resampling": "bilinear", "reproject": "cubic"},
    ),
    Request(
        "tile-color-formula", f"{T}/{tile(NATIVE_ZOOM)}.png", {"color_formula": "gamma rgb 1.5"}
    ),
    Request(
        "tile-nodata-no-mask", f"{T}/{tile(NATIVE_ZOOM)}.png", {"nodata": 0, "return_mask": False}
    ),
    Request("tile-wgs84", f"/cog/tiles/WorldCRS84Quad/{tile_in('WorldCRS84Quad', 11)}.png"),
    Request("tile-sr-off-past-native", f"{T}/{tile(NATIVE_ZOOM + 2)}.png", {"sr": "off"}),
    Request(
        "tile-sr-off-deep-jpeg", f"{T}/{tile(NATIVE_ZOOM + 3)}.jpg", {"sr": "off", "tilesize": 512}
    ),
    # /cog: errors
    Request("tile-outside-dataset", f"{T}/{tile(NATIVE_ZOOM, dx=40)}.png"),
    Request("tile-z-too-deep", f"{T}/30/1/1.png"),
    Request("tile-unknown-tms", "/cog/tiles/NoSuchTMS/1/1/1.png"),
    Request("tile-unknown-format", f"{T}/{tile(NATIVE_ZOOM)}.gif"),
    Request("cog-info-no-url", "/cog/info", source=None),
    Request("head-tile", f"{T}/{tile(NATIVE_ZOOM)}.png", method="HEAD"),
    # /stac
    Request("stac-info", "/stac/info", {"assets": "visual"}, "item"),
    Request("stac-info-geojson", "/stac/info.geojson", {"assets": "visual"}, "item"),
    Request("stac-assets", "/stac/assets", source="item"),
    Request("stac-statistics", "/stac/statistics", {"assets": "visual"}, "item"),
    Request("stac-asset-statistics", "/stac/asset_statistics", {"assets": "visual"}, "item"),
    Request("stac-point", f"/stac/point/{CENTRE[0]},{CENTRE[1]}", {"assets": "visual"}, "item"),
    Request("stac-preview", "/stac/preview.png", {"assets": "visual", "max_size": 256}, "item"),
    Request("stac-bbox", f"/stac/bbox/{BBOX}.webp", {"assets": "visual"}, "item"),
    Request(
        "stac-tile",
        f"/stac/tiles/WebMercatorQuad/{tile(NATIVE_ZOOM)}.png",
        {"assets": "visual"},
        "item",
    ),
    Request(
        "stac-tile-sr-off",
        f"/stac/tiles/WebMercatorQuad/{tile(NATIVE_ZOOM + 2)}.png",
        {"assets": "visual", "sr": "off"},
        "item",
    ),
    Request("stac-tilejson", "/stac/WebMercatorQuad/tilejson.json", {"assets": "visual"}, "item"),
    Request("stac-renders", "/stac/renders", source="item"),
    Request("stac-viewer", "/stac/viewer", source=None),
    Request(
        "stac-no-assets", f"/stac/tiles/WebMercatorQuad/{tile(NATIVE_ZOOM)}.png", source="item"
    ),
    # service routes
    Request("landing", "/", source=None),
    Request("conformance", "/conformance", source=None),
    Request("tilematrixsets", "/tileMatrixSets", source=None),
    Request("tilematrixset-utm", "/tileMatrixSets/UTM31WGS84Quad", source=None),
    Request("colormaps", "/colorMaps", source=None),
    Request("colormap-viridis", "/colorMaps/viridis", source=None),
    Request("colormap-png", "/colorMaps/viridis", {"format": "png"}, source=None),
    Request("algorithms", "/algorithms", source=None),
    Request("algorithm-hillshade", "/algorithms/hillshade", source=None),
]


@dataclass(frozen=True)
class Answer:
    """A response with the server's own base URL replaced by ``{base}`` in text bodies."""

    status: int
    content_type: str
    body: bytes
    headers: httpx.Headers

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_text(self) -> bool:
        return self.content_type.startswith(TEXT_TYPES)


TEXT_TYPES = ("application/json", "application/geo+json", "application/xml", "text/")
Compare = Callable[[Answer, Answer], None]


def _json_without(*keys: str) -> Compare:
    def compare(ours: Answer, theirs: Answer) -> None:
        a, b = ours.json(), theirs.json()
        for key in keys:
            a.pop(key, None), b.pop(key, None)
        assert a == b

    return compare


def _tilejson(ours: Answer, theirs: Answer) -> None:
    _json_without("maxzoom", "description")(ours, theirs)
    assert ours.json()["maxzoom"] > theirs.json()["maxzoom"]
    assert "super-resolved" in ours.json()["description"]


def _tileset(ours: Answer, theirs: Answer) -> None:
    _json_without("tileMatrixSetLimits")(ours, theirs)
    a, b = ours.json()["tileMatrixSetLimits"], theirs.json()["tileMatrixSetLimits"]
    assert a[: len(b)] == b and len(a) > len(b)


def _wmts(ours: Answer, theirs: Answer) -> None:
    ns = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}

    def layers(response: Answer) -> set[str]:
        root = ElementTree.fromstring(response.body)
        return {e.text or "" for e in root.findall("wmts:Contents/wmts:Layer/ows:Identifier", ns)}

    ours_layers, theirs_layers = layers(ours), layers(theirs)
    wanted = {
        name
        for name in theirs_layers
        if name.split("_")[-2] in ("WebMercatorQuad", "WorldCRS84Quad")
    }
    assert wanted and wanted <= ours_layers  # TiTiler's ids, for the TMS listed by default


def _landing(ours: Answer, theirs: Answer) -> None:
    a, b = ours.json(), theirs.json()
    assert a["title"] == "hndsr-tiles" and b["title"] == "TiTiler"
    rels = lambda body: {link["rel"] for link in body["links"] if "external" not in link["title"]}  # noqa: E731
    assert rels(b) <= rels(a)


def _conformance(ours: Answer, theirs: Answer) -> None:
    a, b = set(ours.json()["conformsTo"]), set(theirs.json()["conformsTo"])
    assert a <= b and len(a) >= 15  # TiTiler also conforms through its Zarr factory


def _head(ours: Answer, theirs: Answer) -> None:
    assert theirs.status == 405 and ours.status == 200
    assert ours.body == b"" and int(ours.headers["content-length"]) > 0


KNOWN_DIFFERENCES: dict[str, tuple[str, Callable[[Answer, Answer], None]]] = {
    "cog-tilejson": ("maxzoom: SR zooms; description says where SR starts", _tilejson),
    "cog-tilejson-256": ("maxzoom: SR zooms; description says where SR starts", _tilejson),
    "stac-tilejson": ("maxzoom: SR zooms; description says where SR starts", _tilejson),
    "cog-tileset": ("tileMatrixSetLimits run to the SR maxzoom", _tileset),
    "cog-wmts": ("2 TMS listed (HNDSR_WMTS_TMS), stem-id aliases, SR Abstract, SR limits", _wmts),
    "landing": ("title/description, and links to /openapi.json, /docs, /catalog", _landing),
    "conformance": ("no Zarr/MosaicJSON factory classes", _conformance),
    "head-tile": ("HEAD answers as GET without the body (TiTiler: 405)", _head),
}
"""Request id -> (what differs, what is still compared). Everything else: identical status,
content type and bytes, except that error texts are ours (no paths, no hints about what
exists): for a status >= 400 both bodies are JSON with a ``detail``. Headers beyond the
content type are not compared (``X-SR-*``, ``X-Cache``, ``ETag``, ``Cache-Control`` are ours)."""


@pytest.fixture(scope="module")
def titiler_url(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """titiler.application 2.4 on a real uvicorn server."""
    pool = ServerPool(tmp_path_factory.mktemp("titiler"))
    env = {"TITILER_API_DISABLE_ZARR": "TRUE"}
    yield pool.start(env, app="titiler.application.main:app", factory=False)
    pool.close()


def send(base: str, request: Request, sample_scene: Path) -> Answer:
    sources = {
        "cog": f"{SCENE}_rgb8.tif",
        "cog16": f"{SCENE}_rgb16.tif",
        "item": f"{SCENE}_rgb8.json",
    }
    params = dict(request.params)
    if request.source:
        params = {"url": str(sample_scene / sources[request.source]), **params}
    response = httpx.request(
        request.method, base + request.path, params=params, json=request.body, timeout=120
    )
    content_type = response.headers.get("content-type", "")
    body = response.content
    if content_type.startswith(TEXT_TYPES):
        body = response.text.replace(base, "{base}").encode()
    return Answer(response.status_code, content_type, body, response.headers)


@pytest.mark.parametrize("request_", REQUESTS, ids=[r.id for r in REQUESTS])
def test_same_answer_as_titiler(server_url, titiler_url, sample_scene, request_):
    ours = send(server_url, request_, sample_scene)
    theirs = send(titiler_url, request_, sample_scene)
    if request_.id in KNOWN_DIFFERENCES:
        _, compare = KNOWN_DIFFERENCES[request_.id]
        compare(ours, theirs)
        return
    assert ours.status == theirs.status, ours.body[:500]
    assert ours.content_type == theirs.content_type
    if ours.status >= 400:
        assert "detail" in ours.json() and "detail" in theirs.json()
    else:
        assert ours.body == theirs.body
    if request_.path.startswith(T) and ours.status == 200:
        assert ours.headers["x-sr-mode"] == "off"  # at/below native zoom, or sr=off


def test_every_known_difference_names_a_request():
    assert set(KNOWN_DIFFERENCES) <= {r.id for r in REQUESTS}
    assert len(REQUESTS) >= 60
