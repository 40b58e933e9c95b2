"""The FastAPI application: TiTiler factories at /cog and /stac with SR readers, plus
service routes. ``create_app`` is the uvicorn factory (``tileserver.app:create_app``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from titiler.core.factory import MultiBaseTilerFactory, TilerFactory
from titiler.extensions import (
    cogValidateExtension,
    cogViewerExtension,
    stacExtension,
    stacViewerExtension,
)

from cache import (
    HitFastPath,
    TileCache,
    TileCacheMiddleware,
    build_tiered_cache,
    cors_replica,
)
from sr_engine import Upscaler
from tileserver.admin import include_admin_routes
from tileserver.auth import install_api_keys
from tileserver.canary import MODEL_ROLE, CanarySplit, ModelRouteMiddleware
from tileserver.dependencies import allowed_path, sr_params_for, tile_index_check
from tileserver.errors import ERROR_RESPONSES, install_error_handlers
from tileserver.factories import SRStacRenderExtension, SRTileJSONExtension
from tileserver.guards import BodySizeLimit, RenderGate, limit_render_threads
from tileserver.head import HeadAsGetMiddleware
from tileserver.limits import (
    COG_DEPENDENCIES,
    LIMITED_DEPENDENCIES,
    STAC_DEPENDENCIES,
    ReadLimits,
    check_request,
)
from tileserver.mosaic import include_mosaic_routes
from tileserver.ogc import include_ogc_routes
from tileserver.ratelimit import ColdSRRateLimit, TokenBuckets
from tileserver.reader import SRConfig, SRReader, SRSTACReader
from tileserver.remote_setup import build_allowlist
from tileserver.routes import RequestMetricsMiddleware, router
from tileserver.settings import Settings, get_settings
from tileserver.sr_admission import EarlySRAdmission
from tileserver.sr_backend import Loader, SRBackend, sr_lifespan
from tileserver.sr_report import SRReportMiddleware
from tileserver.static import mount_web_map
from tileserver.tms import SUPPORTED_TMS, tms_subset
from tileserver.wmts import SRWMTSExtension

EXPOSED_HEADERS = ["X-SR-Mode", "X-SR-Scale", "X-SR-Model", "X-Cache", "ETag"]
CORS_OPTIONS: dict[str, Any] = {
    "allow_origins": ["*"],
    "allow_methods": ["GET"],
    "allow_headers": ["*"],
    "expose_headers": EXPOSED_HEADERS,
}
TILE_ROUTES = [
    {"path": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}", "method": "GET"},
    {"path": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}", "method": "GET"},
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Bound the render threads, then the SR lifespan (model warm-up, batch drain)."""
    limit_render_threads(app.state.settings.render_threads)
    async with sr_lifespan(app):
        yield


def create_app(
    settings: Settings | None = None,
    upscaler: Upscaler | None = None,
    loader: Loader | None = None,
) -> FastAPI:
    """Build the app. ``upscaler`` replaces the HNDSR champion and ``loader`` how model URIs
    are loaded (tests inject stand-ins)."""
    settings = settings or get_settings()
    allowlist = build_allowlist(settings)
    app = FastAPI(
        title="hndsr-tiles",
        description="TiTiler-compatible tile server that super-resolves past native resolution.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sr_config = SRConfig(
        min_scale=settings.sr_min_scale,
        max_scale=settings.sr_max_scale,
        backend=SRBackend(settings, model=upscaler, loader=loader),
        allowlist=allowlist,
        read_limits=ReadLimits.from_settings(settings),
    )
    # name -> callable returning True while that part runs in fallback (listed by /readyz)
    app.state.degraded_checks = app.state.sr_config.backend.degraded_checks()

    sr_config: SRConfig = app.state.sr_config
    wmts = SRWMTSExtension(wmts_tms=tms_subset(settings.wmts_tms))
    factory_options: dict[str, Any] = {
        "path_dependency": allowed_path(allowlist),
        "reader_dependency": sr_params_for(sr_config),
        "supported_tms": SUPPORTED_TMS,
        "route_dependencies": [(TILE_ROUTES, [Depends(tile_index_check(SUPPORTED_TMS))])],
        "add_ogc_maps": True,
        **LIMITED_DEPENDENCIES,
    }
    cog = TilerFactory(
        reader=SRReader,
        router_prefix="/cog",
        extensions=[
            cogValidateExtension(),
            cogViewerExtension(),
            stacExtension(),
            wmts,
            SRTileJSONExtension(),
        ],
        **factory_options,
        **COG_DEPENDENCIES,
    )
    stac = MultiBaseTilerFactory(
        reader=SRSTACReader,
        router_prefix="/stac",
        get_renders=lambda src: src.item.properties.get("renders", {}),  # type: ignore[attr-defined]
        extensions=[
            stacViewerExtension(),
            SRStacRenderExtension(sr_config=sr_config),
            wmts,
            SRTileJSONExtension(),
        ],
        **factory_options,
        **STAC_DEPENDENCIES,
    )
    dataset_routes: dict[str, Any] = {
        "dependencies": [Depends(check_request)],
        "responses": ERROR_RESPONSES,
    }
    app.include_router(
        cog.router, prefix="/cog", tags=["Cloud Optimized GeoTIFF"], **dataset_routes
    )
    app.include_router(stac.router, prefix="/stac", tags=["STAC"], **dataset_routes)
    app.include_router(router)
    mosaic = include_mosaic_routes(
        app,
        wmts.wmts_tms,
        sr_config,
        supported_tms=SUPPORTED_TMS,
        route_dependencies=factory_options["route_dependencies"],
        router_options=dataset_routes,
    )
    include_ogc_routes(app, [cog, stac, mosaic])
    include_admin_routes(app, settings.admin_token)
    install_error_handlers(app)
    mount_web_map(app)  # the web map at /; last route, a mount at / takes every other path

    tiles = TileCache(
        build_tiered_cache(
            settings.cache_dir, settings.cache_size_mb, settings.memory_cache_mb, settings.redis_url
        ),
        check_source=allowlist.check,
        remote_identity=allowlist.remote_identity,
        model_version=lambda: app.state.sr_config.backend.version_for(MODEL_ROLE.get()),
    )
    app.state.degraded_checks.update(tiles.down_checks())

    # Middleware, innermost first (each add_middleware wraps the previous ones).
    app.add_middleware(
        RenderGate,
        deadline_s=settings.render_deadline_s,
        capacity=settings.render_threads + settings.render_queue,
        queue_wait_s=settings.render_queue_wait_s,
    )
    # explicit model modes the SR runtime refuses now: 503 before waiting for a thread
    app.add_middleware(
        EarlySRAdmission, backend=sr_config.backend, memo=sr_config.sr_zooms, allowlist=allowlist
    )
    app.add_middleware(SRReportMiddleware)
    if settings.rate_limit_per_minute > 0:  # behind the tile cache: hits never count
        buckets = TokenBuckets(
            settings.rate_limit_per_minute / 60, settings.rate_limit_burst, settings.redis_url
        )
        app.add_middleware(ColdSRRateLimit, buckets=buckets)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)  # POSTs: not cached
    app.add_middleware(TileCacheMiddleware, tiles=tiles)
    # The layers outside the cache, each with what the hit fast path does in its place.
    # A middleware added here without its replica would be skipped by memory hits.
    outside_cache = [
        (Middleware(RequestMetricsMiddleware), RequestMetricsMiddleware.replica),
        (Middleware(CORSMiddleware, **CORS_OPTIONS), cors_replica(**CORS_OPTIONS)),
    ]
    for middleware, _ in outside_cache:
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    # Memory hits end here (cache/fast_path.py); only the HEAD rewrite is outside it.
    app.add_middleware(HitFastPath, tiles=tiles, replicas=[replica for _, replica in outside_cache])
    if "canary" in app.state.sr_config.backend.uris:  # the model choice, before the cache key
        split = CanarySplit(settings.canary_fraction, settings.canary_block_zoom_offset)
        app.add_middleware(ModelRouteMiddleware, split=split)
    app.add_middleware(HeadAsGetMiddleware)  # HEAD runs as GET (memory hits included)
    install_api_keys(app, settings)  # outside the hit fast path: cached tiles need a key too
    return app
