"""Pre-warm: enumerate the tiles of an area and compute them through the app, in process.

Tiles come from morecantile over the intersection of the dataset's footprint and the area
(a bbox or a GeoJSON geometry, rasterized onto the tile grid with ``all_touched``); of a
MosaicJSON, only the tiles that one of its COGs covers (the server answers 204 No Content
for the others). Each
tile is a request to the real ASGI app (``httpx.ASGITransport``), so keys and bytes are the
ones the server stores; a cached tile answers ``X-Cache: HIT-*`` and counts as skipped.
Finished tiles are appended to a progress file, which makes an interrupted run resumable.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import morecantile
from affine import Affine
from cogeo_mosaic.backends import MosaicBackend
from rasterio.features import bounds, rasterize
from rasterio.warp import transform_geom
from rio_tiler.io import Reader, STACReader

from sr_engine.modes import AUTO

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class TileSource:
    """What to request: endpoint (``cog``/``stac``/``mosaicjson``), dataset URL and the
    tile query."""

    url: str
    endpoint: str = "cog"
    tms: str = "WebMercatorQuad"
    sr: str = AUTO
    fmt: str | None = None
    tilesize: int | None = None
    params: tuple[tuple[str, str], ...] = ()

    def path(self, tile: morecantile.Tile) -> str:
        """The request path (with query) of one tile."""
        suffix = f".{self.fmt}" if self.fmt else ""
        query: list[tuple[str, str]] = [("url", self.url), ("sr", self.sr)]
        if self.tilesize:
            query.append(("tilesize", str(self.tilesize)))
        query.extend(self.params)
        return f"/{self.endpoint}/tiles/{self.tms}/{tile.z}/{tile.x}/{tile.y}{suffix}?" + urlencode(
            query
        )


def source_endpoint(url: str, stac: bool = False, mosaic: bool = False) -> str:
    """The endpoint of a dataset URL: as told, else ``*.mosaic.json`` is a MosaicJSON,
    another ``*.json`` a STAC item, the rest a COG."""
    if mosaic or (not stac and url.endswith(".mosaic.json")):
        return "mosaicjson"
    return "stac" if stac or url.endswith(".json") else "cog"


def dataset_bounds(source: TileSource) -> Bounds:
    """Geographic (lon/lat) bounds of the dataset, STAC item or MosaicJSON."""
    if source.endpoint == "mosaicjson":
        with MosaicBackend(source.url) as mosaic:
            return tuple(mosaic.get_geographic_bounds("EPSG:4326"))  # type: ignore[return-value]
    reader: Any = STACReader if source.endpoint == "stac" else Reader
    with reader(source.url) as src:
        return tuple(src.get_geographic_bounds("EPSG:4326"))  # type: ignore[return-value]


def mosaic_covered(
    url: str, tms: morecantile.TileMatrixSet, tiles: Sequence[morecantile.Tile]
) -> list[morecantile.Tile]:
    """The ``tiles`` that a COG of the MosaicJSON at ``url`` covers, by the server's rule
    (the document lists the COG for the tile and the tile intersects the COG's bounds)."""
    listed: dict[str, list[morecantile.Tile]] = {}
    with MosaicBackend(url, tms=tms) as mosaic:
        for tile in tiles:
            for asset in mosaic.assets_for_tile(tile.x, tile.y, tile.z):
                listed.setdefault(asset, []).append(tile)
    covered: set[morecantile.Tile] = set()
    for asset, candidates in listed.items():
        with Reader(asset, tms=tms) as src:
            covered.update(t for t in candidates if src.tile_exists(t.x, t.y, t.z))
    return [tile for tile in tiles if tile in covered]


def geojson_geometries(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Geometries of a GeoJSON FeatureCollection, Feature or bare geometry."""
    if document.get("type") == "FeatureCollection":
        return [feature["geometry"] for feature in document["features"]]
    if document.get("type") == "Feature":
        return [document["geometry"]]
    return [document]


def _geometry_bounds(geometries: Sequence[dict[str, Any]]) -> Bounds:
    return bounds({"type": "GeometryCollection", "geometries": list(geometries)})


def plan_tiles(
    tms: morecantile.TileMatrixSet,
    footprint: Bounds,
    zooms: Iterable[int],
    bbox: Bounds | None = None,
    geometries: Sequence[dict[str, Any]] | None = None,
) -> Iterator[morecantile.Tile]:
    """Tiles intersecting the footprint and the area (bbox, else geometries, else everything)."""
    area = bbox or (_geometry_bounds(geometries) if geometries else footprint)
    west, south = max(footprint[0], area[0]), max(footprint[1], area[1])
    east, north = min(footprint[2], area[2]), min(footprint[3], area[3])
    if west >= east or south >= north:
        return
    for zoom in zooms:
        tiles = list(tms.tiles(west, south, east, north, [zoom]))
        if geometries and not bbox and tiles:
            tiles = _touching(tms, tiles, geometries)
        yield from tiles


def _touching(
    tms: morecantile.TileMatrixSet,
    tiles: list[morecantile.Tile],
    geometries: Sequence[dict[str, Any]],
) -> list[morecantile.Tile]:
    """The tiles (one zoom) that a geometry touches: rasterize onto a grid of tile cells."""
    zoom = tiles[0].z
    min_x, min_y = min(t.x for t in tiles), min(t.y for t in tiles)
    max_x, max_y = max(t.x for t in tiles), max(t.y for t in tiles)
    corner = tms.xy_bounds(morecantile.Tile(min_x, min_y, zoom))
    span_x, span_y = corner.right - corner.left, corner.top - corner.bottom
    transform = Affine(span_x, 0, corner.left, 0, -span_y, corner.top)
    shapes = [transform_geom("EPSG:4326", tms.rasterio_crs, g) for g in geometries]
    mask = rasterize(
        shapes,
        out_shape=(max_y - min_y + 1, max_x - min_x + 1),
        transform=transform,
        all_touched=True,
        fill=0,
        default_value=1,
        dtype="uint8",
    )
    return [t for t in tiles if mask[t.y - min_y, t.x - min_x]]


BUSY_RETRIES = 5
"""Times a tile answered 503 + ``Retry-After`` (a busy server) is asked again."""
MAX_BUSY_WAIT_S = 10.0
"""Longest wait before asking a busy server again."""


async def get_when_not_busy(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path``; a 503 with ``Retry-After`` is retried after that wait (at most
    ``BUSY_RETRIES`` times, each wait capped at ``MAX_BUSY_WAIT_S``)."""
    response = await client.get(path)
    for _ in range(BUSY_RETRIES):
        if response.status_code != 503:
            return response
        try:
            wait = float(response.headers["retry-after"])
        except (KeyError, ValueError):
            return response
        await asyncio.sleep(min(max(wait, 0.0), MAX_BUSY_WAIT_S))
        response = await client.get(path)
    return response


@dataclass
class Summary:
    """Counts of a pre-warm run."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Computed tiles per second so far."""
        return self.done / max(time.monotonic() - self.started, 1e-9)


def tile_id(tile: morecantile.Tile) -> str:
    """``z/x/y``."""
    return f"{tile.z}/{tile.x}/{tile.y}"


def read_progress(progress_file: Path | None) -> set[str]:
    """Tile ids finished by an earlier run of the same pre-warm."""
    if progress_file is None or not progress_file.exists():
        return set()
    return {line.strip() for line in progress_file.read_text().splitlines() if line.strip()}


async def app_client(app: Any, stack: AsyncExitStack) -> httpx.AsyncClient:
    """An HTTP client that runs requests through ``app`` in this process (lifespan included)."""
    router = getattr(app, "router", None)
    if router is not None and hasattr(router, "lifespan_context"):
        await stack.enter_async_context(router.lifespan_context(app))
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://prewarm", timeout=None)
    return await stack.enter_async_context(client)


async def run_prewarm(
    app: Any,
    source: TileSource,
    tiles: Sequence[morecantile.Tile],
    concurrency: int,
    summary: Summary,
    progress_file: Path | None = None,
    advance: Any = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Request every tile (``concurrency`` at a time), skipping those in the progress file;
    once ``stop`` is set, tiles in flight finish and no new one starts."""
    finished = read_progress(progress_file)
    pending = [t for t in tiles if tile_id(t) not in finished]
    queue = iter(pending)
    summary.total = len(tiles)
    summary.skipped += len(tiles) - len(pending)
    if advance:
        advance(summary.skipped)
    log = progress_file.open("a") if progress_file else None

    async def worker(client: httpx.AsyncClient) -> None:
        for tile in queue:
            if stop is not None and stop.is_set():
                return
            response = await get_when_not_busy(client, source.path(tile))
            summary.statuses[response.status_code] = (
                summary.statuses.get(response.status_code, 0) + 1
            )
            if response.status_code != 200:
                summary.failed += 1
            else:
                if response.headers.get("x-cache", "").startswith("HIT"):
                    summary.skipped += 1
                else:
                    summary.done += 1
                if log:
                    log.write(tile_id(tile) + "\n")
                    log.flush()
            if advance:
                advance(1)

    try:
        async with AsyncExitStack() as stack:
            client = await app_client(app, stack)
            await asyncio.gather(*(worker(client) for _ in range(max(1, concurrency))))
    finally:
        if log:
            log.close()
    return summary


def load_geojson(path: Path) -> list[dict[str, Any]]:
    """Geometries of a GeoJSON file."""
    return geojson_geometries(json.loads(path.read_text()))
