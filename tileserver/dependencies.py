"""FastAPI dependencies: the ``sr`` reader options, the allowlisted dataset path, tile
indices; each bound to the app's services when the factories are built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from fastapi import Path, Query, Request
from morecantile import TileMatrixSet, TileMatrixSets
from rio_tiler.errors import TileOutsideBounds
from titiler.core.dependencies import DefaultDependency

from sr_engine.modes import RequestMode
from tileserver.reader import SRConfig
from tileserver.security import Allowlist
from tileserver.sr_report import current_report

TILEJSON_DEFAULT_TILESIZE = 512
"""TiTiler's tilejson advertises 512-px tiles unless ``tilesize`` is given."""


def advertised_tilesize(request: Request) -> int:
    """Tile size of the tile URLs a request advertises (tilejson: 512, WMTS/tilesets: 256)."""
    value = request.query_params.get("tilesize", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    if request.url.path.endswith("/tilejson.json"):
        return TILEJSON_DEFAULT_TILESIZE
    return 256


SRModeQuery = Annotated[
    RequestMode,
    Query(
        description="Super-resolution past native resolution: `auto` (the model's default "
        "mode, bicubic until a model is loaded), `off` (plain TiTiler tile), `bicubic` "
        "(baseline), `fast` or `diffusion` (model modes; 503 until a model is loaded)."
    ),
]


@dataclass
class SRParams(DefaultDependency):
    """The ``sr`` query parameter; ``as_dict`` gives the SR readers' init options with the
    SR configuration that the class is bound to (``sr_params_for``)."""

    sr: SRModeQuery = RequestMode.AUTO
    request: Request = field(default=None, repr=False)  # type: ignore[arg-type]
    sr_config: ClassVar[SRConfig]
    pass_report: ClassVar[bool] = False
    """Hand the request's ``SRReport`` to the readers (a mosaic reads its COGs in threads)."""

    def as_dict(self, exclude_none: bool = True) -> dict:
        """Reader init options: mode, advertised tile size, the SR configuration."""
        options = {
            "sr_mode": str(self.sr),
            "advertised_tilesize": advertised_tilesize(self.request),
            "sr_config": self.sr_config,
        }
        return {**options, "sr_report": current_report()} if self.pass_report else options


def sr_params_for(config: SRConfig, *, pass_report: bool = False) -> type[SRParams]:
    """``SRParams`` bound to an app's SR configuration: a factory's ``reader_dependency``."""
    bound = {"sr_config": config, "pass_report": pass_report, "__module__": __name__}
    return type("SRParams", (SRParams,), bound)


def allowed_path(allowlist: Allowlist) -> Callable[..., str]:
    """The ``url`` query dependency of a factory (``path_dependency``), bound to the app's
    allowlist: the dataset URL after the allowlist check (403 before anything opens)."""

    def allowed_url(url: Annotated[str, Query(description="Dataset URL or path")]) -> str:
        """The dataset ``url`` after the allowlist check."""
        return allowlist.check_existing(url)

    return allowed_url


def tile_index_check(tms_set: TileMatrixSets) -> Callable[..., None]:
    """A tile route dependency over the factory's ``tms_set``: 404 for z/x/y outside the
    TileMatrixSet (as TiTiler answers), before anything opens."""

    def check_tile_index(
        tileMatrixSetId: Annotated[str, Path()],
        z: Annotated[int, Path()],
        x: Annotated[int, Path()],
        y: Annotated[int, Path()],
    ) -> None:
        """Raise ``TileOutsideBounds`` for a tile outside its matrix."""
        if tileMatrixSetId not in tms_set.list():
            return  # the route's own validation answers 422
        tms: TileMatrixSet = tms_set.get(tileMatrixSetId)
        inside = tms.minzoom <= z <= tms.maxzoom
        if inside:
            matrix = tms.matrix(z)
            inside = 0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight
        if not inside:
            raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")

    return check_tile_index
