"""Service routes: /catalog, /healthz, /readyz and /metrics."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import rasterio
from cogeo_mosaic.errors import MosaicError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from rasterio.warp import transform_geom
from rio_tiler.constants import WEB_MERCATOR_TMS
from starlette.types import Message, Receive, Scope, Send

from sr_engine.gpu_metrics import register_gpu_metrics
from tileserver.errors import DatasetNotFoundError, SourceNotAllowedError
from tileserver.http_middleware import HTTPMiddleware
from tileserver.metrics import REQUEST_DURATION
from tileserver.mosaic import AllowlistedMosaicBackend, MosaicAssetReader
from tileserver.reader import SRConfig, SRReader

router = APIRouter()
RASTER_SUFFIXES = (".tif", ".tiff")
MOSAIC_SUFFIX = ".mosaic.json"
MOSAIC_SKIPPED = (
    MosaicError,
    ValueError,
    rasterio.errors.RasterioError,
    SourceNotAllowedError,
    DatasetNotFoundError,
)
"""A mosaic that is unreadable or names COGs outside the allowlist is left out."""


def _catalog_entry(request: Request, path: Path, config: SRConfig) -> dict[str, Any]:
    with SRReader(str(path), sr_config=config, advertised_tilesize=512) as src:
        bounds = src.get_geographic_bounds(WEB_MERCATOR_TMS.rasterio_geographic_crs)
        native_zoom, maxzoom, minzoom = src.native_maxzoom, src.maxzoom, src.minzoom
        title = src.dataset.tags().get("TITLE") or path.stem
        geometry = _footprint(src.dataset)
    base = str(request.base_url).rstrip("/")
    query = urlencode({"url": str(path)})
    entry: dict[str, Any] = {
        "id": path.stem,
        "title": title,
        "url": str(path),
        "bounds": list(bounds),
        "minzoom": minzoom,
        "native_maxzoom": native_zoom,
        "maxzoom": maxzoom,
        "tilejson": f"{base}/cog/WebMercatorQuad/tilejson.json?{query}",
        "wmts": f"{base}/cog/WMTSCapabilities.xml?{query}",
        "geometry": geometry,
    }
    item = path.with_suffix(".json")
    if item.is_file():
        stac = json.loads(item.read_text())
        properties = stac.get("properties") or {}
        entry["stac_item"] = str(item)
        entry["title"] = properties.get("title") or title
        entry["attribution"] = properties.get("attribution")
    return entry


def _mosaic_entry(request: Request, path: Path, config: SRConfig) -> dict[str, Any]:
    """A catalog entry of a MosaicJSON document (``*.mosaic.json``)."""
    options = {"sr_config": config, "advertised_tilesize": 512}
    with AllowlistedMosaicBackend(
        str(path), reader=MosaicAssetReader, reader_options=options, sr_config=config
    ) as mosaic:
        west, south, east, north = mosaic.bounds
        native_zoom, maxzoom, minzoom = mosaic.mosaic_def.maxzoom, mosaic.maxzoom, mosaic.minzoom
        title = mosaic.mosaic_def.name or path.name.removesuffix(MOSAIC_SUFFIX)
    base = str(request.base_url).rstrip("/")
    query = urlencode({"url": str(path)})
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "id": path.name.removesuffix(MOSAIC_SUFFIX),
        "title": title,
        "url": str(path),
        "mosaic": True,
        "bounds": [west, south, east, north],
        "minzoom": minzoom,
        "native_maxzoom": native_zoom,
        "maxzoom": maxzoom,
        "tilejson": f"{base}/mosaicjson/WebMercatorQuad/tilejson.json?{query}",
        "wmts": f"{base}/mosaicjson/WMTSCapabilities.xml?{query}",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def _footprint(dataset: rasterio.io.DatasetReader, points_per_edge: int = 21) -> dict[str, Any]:
    """The dataset's outline in lon/lat (edges densified, so a rotated grid stays exact)."""
    left, bottom, right, top = dataset.bounds
    steps = [i / (points_per_edge - 1) for i in range(points_per_edge)]
    ring = (
        [(left + (right - left) * t, top) for t in steps]
        + [(right, top - (top - bottom) * t) for t in steps[1:]]
        + [(right - (right - left) * t, bottom) for t in steps[1:]]
        + [(left, bottom + (top - bottom) * t) for t in steps[1:]]
    )
    polygon = {"type": "Polygon", "coordinates": [ring]}
    return transform_geom(dataset.crs, "EPSG:4326", polygon)


@router.get("/catalog", tags=["service"])
def catalog(request: Request) -> list[dict[str, Any]]:
    """Datasets (COGs, then MosaicJSON documents ``*.mosaic.json``) in the data directory:
    id, title, url, bounds, native and SR max zoom, tilejson."""
    config: SRConfig = request.app.state.sr_config
    data_dir: Path = request.app.state.settings.data_dir.resolve()
    if not data_dir.is_dir():
        return []
    entries = []
    for path in sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES):
        try:
            entries.append(_catalog_entry(request, path, config))
        except rasterio.errors.RasterioError:
            continue  # not a raster GDAL can read: not a dataset
    for path in sorted(data_dir.rglob(f"*{MOSAIC_SUFFIX}")):
        try:
            entries.append(_mosaic_entry(request, path, config))
        except MOSAIC_SKIPPED:
            continue
    return entries


@router.get("/healthz", tags=["service"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["service"])
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve tiles; ``degraded`` names what runs in fallback (model, cache tiers...)."""
    state = request.app.state
    degraded = sorted(name for name, check in state.degraded_checks.items() if check())
    body = {
        "status": "degraded" if degraded else "ready",
        "degraded": degraded,
        "model": state.sr_config.backend.model_status(),
    }
    return JSONResponse(body, status_code=200)


@router.get("/metrics", tags=["service"], include_in_schema=False)
async def metrics() -> Response:
    """Prometheus metrics (aggregated over workers when PROMETHEUS_MULTIPROC_DIR is set)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    register_gpu_metrics(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware(HTTPMiddleware):
    """Observes ``hndsr_http_request_duration_seconds`` by route template and status."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, then observe its duration under its route and status."""
        start = time.perf_counter()
        status = [500]
        try:
            await self.app(scope, receive, _recording_status(send, status))
        finally:
            _observe(scope, status[0], start)

    @staticmethod
    async def replica(scope: Scope, send: Send) -> Send:
        """What this layer does to a response it does not see (the cache's hit fast path):
        the same observation, made when the last body message is sent."""
        start = time.perf_counter()
        status = [500]
        recording = _recording_status(send, status)

        async def send_and_observe(message: Message) -> None:
            await recording(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                _observe(scope, status[0], start)

        return send_and_observe


def _recording_status(send: Send, status: list[int]) -> Send:
    async def send_status(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        await send(message)

    return send_status


_OBSERVERS: dict[tuple[str, int], Any] = {}


def _observe(scope: Scope, status: int, start: float) -> None:
    route = getattr(scope.get("route"), "path", "unmatched")
    observer = _OBSERVERS.get((route, status))
    if observer is None:
        observer = _OBSERVERS[route, status] = REQUEST_DURATION.labels(route, str(status))
    observer.observe(time.perf_counter() - start)
