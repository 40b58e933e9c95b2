"""FastAPI dependencies: the ``sr`` reader options, the allowlisted dataset path, tile indices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Path, Query, Request
from morecantile import TileMatrixSet
from rio_tiler.errors import TileOutsideBounds
from titiler.core.dependencies import DefaultDependency

from tileserver.reader import SRConfig

SRMode = Literal["auto", "off", "bicubic", "fast", "diffusion"]
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


@dataclass
class SRParams(DefaultDependency):
    """Super-resolution options, passed to the SR readers' init."""

    sr: Annotated[
        SRMode,
        Query(
            description="Super-resolution past native resolution: `auto` (the model's default "
            "mode, bicubic until a model is loaded), `off` (plain TiTiler tile), `bicubic` "
            "(baseline), `fast` or `diffusion` (model modes; 503 until a model is loaded)."
        ),
    ] = "auto"
    request: Request = field(default=None, repr=False)  # type: ignore[arg-type]

    def as_dict(self, exclude_none: bool = True) -> dict:
        """Reader init options: mode, advertised tile size and the app's SR configuration."""
        config: SRConfig = self.request.app.state.sr_config
        return {
            "sr_mode": self.sr,
            "advertised_tilesize": advertised_tilesize(self.request),
            "sr_config": config,
        }


def allowed_url(
    request: Request, url: Annotated[str, Query(description="Dataset URL or path")]
) -> str:
    """The dataset ``url`` after the allowlist check (403 before anything opens)."""
    config: SRConfig = request.app.state.sr_config
    return config.allowlist.check_existing(url)


def check_tile_index(
    request: Request,
    tileMatrixSetId: Annotated[str, Path()],
    z: Annotated[int, Path()],
    x: Annotated[int, Path()],
    y: Annotated[int, Path()],
) -> None:
    """404 for z/x/y outside the TileMatrixSet (as TiTiler answers), before anything opens."""
    tms_set = request.app.state.supported_tms
    if tileMatrixSetId not in tms_set.list():
        return  # the route's own validation answers 422
    tms: TileMatrixSet = tms_set.get(tileMatrixSetId)
    inside = tms.minzoom <= z <= tms.maxzoom
    if inside:
        matrix = tms.matrix(z)
        inside = 0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight
    if not inside:
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
