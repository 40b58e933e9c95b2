"""MosaicJSON at ``/mosaicjson``: titiler.mosaic's factory whose dataset reader is the SR
reader, so a mosaic of many COGs super-resolves past its native zoom. The mosaic document
is fetched through the allowlist (redirect hops included) and every COG it names is checked
before it opens; the advertised maxzoom is the SR maxzoom of the mosaic's COGs. On SR
zooms the COGs of a tile are read as one source window (``tileserver.mosaic_sr``), so
their boundaries leave no seam."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import attr
from cogeo_mosaic.backends.base import MosaicJSONBackend
from cogeo_mosaic.errors import MosaicAuthError, MosaicError, MosaicNotFoundError
from cogeo_mosaic.mosaic import MosaicJSON
from fastapi import FastAPI
from morecantile import TileMatrixSets
from rio_tiler.errors import NoAssetFoundError
from rio_tiler.models import ImageData
from rio_tiler.mosaic.methods import FirstMethod
from titiler.core.dependencies import DefaultDependency
from titiler.core.errors import add_exception_handlers
from titiler.mosaic.errors import MOSAIC_STATUS_CODES
from titiler.mosaic.extensions.mosaicjson import MosaicJSONExtension
from titiler.mosaic.factory import MosaicTilerFactory

from sr_engine.modes import OFF
from tileserver.dependencies import allowed_path, sr_params_for
from tileserver.factories import SRTileJSONExtension
from tileserver.mosaic_sr import MosaicGrid, MosaicWindowReader, SourceGrid, seamless_sr_tile
from tileserver.reader import SRConfig
from tileserver.sr_zooms import ZoomInfo
from tileserver.wmts import SRMosaicWMTSExtension


@attr.s
class MosaicAssetReader(MosaicWindowReader):
    """The SR reader of one COG of a mosaic: the COG's URL passes the allowlist first."""

    def __attrs_post_init__(self) -> None:
        """Check the asset against the allowlist, then open it as ``SRReader`` does."""
        if self.sr_config is None:
            raise ValueError("MosaicAssetReader needs an sr_config")
        self.input = self.sr_config.allowlist.check_existing(str(self.input))
        super().__attrs_post_init__()


@attr.s
class AllowlistedMosaicBackend(MosaicJSONBackend):
    """A read-only MosaicJSON document fetched through the allowlist; its maxzoom is raised
    to the SR maxzoom of its first COG (the COGs of one mosaic share a resolution), whose
    grid is the mosaic's SR grid (``MosaicGrid``)."""

    sr_config: SRConfig | None = attr.ib(default=None, kw_only=True)
    _backend_name = "MosaicJSON"

    def __attrs_post_init__(self) -> None:
        """Read the document; open its first COG for the SR zooms and the mosaic's grid."""
        user_maxzoom = self.maxzoom
        super().__attrs_post_init__()
        self.mosaic_grid: MosaicGrid | None = None
        self.zoom_info: ZoomInfo | None = None
        if self.mosaic_def.tiles:
            first = next(iter(self.mosaic_def.tiles.values()))[0]
            asset = (self.mosaic_def.asset_prefix or "") + first
            with self.reader(asset, tms=self.tms, **self.reader_options) as src:
                self.mosaic_grid = MosaicGrid(SourceGrid.of(src.dataset), src.native_res)
                if user_maxzoom is None:
                    self.maxzoom = max(self.maxzoom, src.maxzoom)
                    self.zoom_info = src.zoom_info

    def tile(  # type: ignore[override]
        self, x: int, y: int, z: int, search_options: dict | None = None, **kwargs: Any
    ) -> tuple[ImageData, list[str]]:
        """An SR tile from one window of all its COGs (``seamless_sr_tile``); titiler's
        per-COG read otherwise (native zooms, ``sr=off``, a ``pixel_selection`` other than
        ``first``, COGs on different grids)."""
        method = kwargs.get("pixel_selection", FirstMethod)
        first_valid = method is FirstMethod or isinstance(method, FirstMethod)
        reader = self.reader
        sr_on = self.reader_options.get("sr_mode") != OFF
        if issubclass(reader, MosaicWindowReader) and first_valid and sr_on:
            assets = self.assets_for_tile(x, y, z, **(search_options or {}))
            if not assets:
                raise NoAssetFoundError(f"No assets found for tile {z}-{x}-{y}")
            merged = seamless_sr_tile(
                partial(reader, tms=self.tms, **self.reader_options),
                assets,
                (x, y, z),
                self.mosaic_grid,
                kwargs,
            )
            if merged is not None:
                image, used = merged
                return image, [self.asset_name(asset) for asset in used]
        return super().tile(x, y, z, search_options=search_options, **kwargs)

    def _read(self) -> MosaicJSON:
        """The mosaic document, fetched through the allowlist."""
        assert self.sr_config is not None
        return MosaicJSON(**self.sr_config.allowlist.fetch_json(self.input))

    def write(self, overwrite: bool = True) -> None:
        """The server never writes mosaics (``hndsr-tiles mosaic create`` does)."""
        raise NotImplementedError("mosaics are read-only here")


@dataclass
class MosaicBackendParams(DefaultDependency):
    """Backend options: the SR configuration the class is bound to (its allowlist)."""

    sr_config: ClassVar[SRConfig]

    def as_dict(self, exclude_none: bool = True) -> dict:
        """``sr_config`` for ``AllowlistedMosaicBackend``."""
        return {"sr_config": self.sr_config}


def mosaic_backend_params_for(config: SRConfig) -> type[MosaicBackendParams]:
    """``MosaicBackendParams`` bound to an app's SR configuration (``backend_dependency``)."""
    bound = {"sr_config": config, "__module__": __name__}
    return type("MosaicBackendParams", (MosaicBackendParams,), bound)


def include_mosaic_routes(
    app: FastAPI,
    wmts_tms: TileMatrixSets,
    sr_config: SRConfig,
    router_options: dict[str, Any] | None = None,
    **factory_options: Any,
) -> MosaicTilerFactory:
    """Mount ``/mosaicjson`` (tiles, tilejson, tilesets, WMTS, map.html, info, point);
    ``router_options`` go to ``include_router`` (the request checks of the other routes)."""
    mosaic = MosaicTilerFactory(
        backend=AllowlistedMosaicBackend,  # type: ignore[arg-type]
        backend_dependency=mosaic_backend_params_for(sr_config),
        dataset_reader=MosaicAssetReader,
        # the mosaic reads its COGs in threads: the readers get the request's SR report
        reader_dependency=sr_params_for(sr_config, pass_report=True),
        path_dependency=allowed_path(sr_config.allowlist),
        router_prefix="/mosaicjson",
        extensions=[
            MosaicJSONExtension(),
            SRMosaicWMTSExtension(wmts_tms=wmts_tms),
            SRTileJSONExtension(),
        ],
        **factory_options,
    )
    app.include_router(
        mosaic.router, prefix="/mosaicjson", tags=["MosaicJSON"], **(router_options or {})
    )
    add_exception_handlers(
        app,
        {
            **MOSAIC_STATUS_CODES,
            MosaicAuthError: 401,
            MosaicError: 424,
            MosaicNotFoundError: 404,
        },
    )
    return mosaic
