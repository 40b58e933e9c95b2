"""Tile geometry: effective scale, SR zoom range and windows on a dataset's global LR grid.

The global low-resolution (LR) grid of a dataset in a TileMatrixSet has the dataset's
native pixel size in the TMS CRS and is anchored at the TMS origin (top-left). Every SR
read is a window of that grid, and every output pixel is sampled at its centre expressed
in grid coordinates, so neighbouring tiles and tiles of different sizes agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from morecantile import Tile, TileMatrixSet
from rio_tiler.io.base import SpatialMixin


@dataclass(frozen=True)
class Grid:
    """A regular grid in the TMS CRS: top-left origin and pixel size (x, y)."""

    x0: float
    y0: float
    res_x: float
    res_y: float


@dataclass(frozen=True)
class Frame:
    """The output raster of a request: top-left corner, pixel size and shape (rows, cols)."""

    left: float
    top: float
    res_x: float
    res_y: float
    height: int
    width: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the TMS CRS."""
        return (
            self.left,
            self.top - self.height * self.res_y,
            self.left + self.width * self.res_x,
            self.top,
        )


@dataclass(frozen=True)
class SamplingPlan:
    """Where to read on the LR grid and how the upscaler must sample it."""

    col0: int
    row0: int
    col1: int
    row1: int
    origin: tuple[float, float]
    """Top-left corner of the output in LR-window pixel coordinates (x, y)."""
    scale: tuple[float, float]
    out_shape: tuple[int, int]
    pixel_offset: tuple[int, int]
    """Absolute (col, row) of output pixel (0, 0) on the output resolution's global grid."""

    @property
    def window_shape(self) -> tuple[int, int]:
        """(rows, cols) of the LR window."""
        return self.row1 - self.row0, self.col1 - self.col0


def native_resolution(reader: SpatialMixin) -> tuple[float, float]:
    """Dataset pixel size (x, y) in the TMS CRS: rio-tiler's own (cached) reprojected
    geometry of the dataset, the one its min/max zooms come from."""
    if reader.crs is None or reader.transform is None or not reader.width or not reader.height:
        raise ValueError("the dataset has no georeferencing")
    dst_affine, _, _ = reader._dst_geom_in_tms_crs
    return abs(dst_affine[0]), abs(dst_affine[4])


def tms_origin(tms: TileMatrixSet) -> tuple[float, float]:
    """Top-left corner (x, y) of the TMS matrices in the TMS CRS."""
    bounds = tms.xy_bounds(Tile(x=0, y=0, z=tms.minzoom))
    return bounds.left, bounds.top


def tile_frame(tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int) -> Frame:
    """The output frame of tile (x, y, z) rendered at ``tilesize`` pixels."""
    left, bottom, right, top = tms.xy_bounds(Tile(x=x, y=y, z=z))
    return Frame(
        left, top, (right - left) / tilesize, (top - bottom) / tilesize, tilesize, tilesize
    )


def zoom_scale(
    tms: TileMatrixSet, native_res: tuple[float, float], z: int, tilesize: int
) -> tuple[float, float]:
    """Effective scale (sx, sy) of a zoom level: native resolution / tile resolution."""
    matrix = tms.matrix(z)
    res_x = matrix.cellSize * matrix.tileWidth / tilesize
    res_y = matrix.cellSize * matrix.tileHeight / tilesize
    return native_res[0] / res_x, native_res[1] / res_y


def sr_zoom_range(
    tms: TileMatrixSet,
    native_res: tuple[float, float],
    tilesize: int,
    min_scale: float,
    max_scale: float,
) -> tuple[int, int]:
    """(first zoom super-resolved, deepest zoom with scale <= ``max_scale``) for ``tilesize``.

    Either value is -1 when no zoom of the TMS qualifies.
    """
    first_sr, deepest = -1, -1
    for z in range(tms.minzoom, tms.maxzoom + 1):
        s = max(zoom_scale(tms, native_res, z, tilesize))
        if s <= max_scale * (1 + 1e-9):
            deepest = z
        if first_sr < 0 and s > min_scale:
            first_sr = z
    return first_sr, deepest


def plan_sampling(grid: Grid, frame: Frame, halo: int) -> SamplingPlan:
    """The LR window (with ``halo`` pixels each side) and the sampling of ``frame`` on ``grid``.

    Output pixel (r, c) is centred at ``frame.left + (c + 0.5) * frame.res_x`` (likewise in y,
    downwards), i.e. at ``u = (X - grid.x0) / grid.res_x`` in grid pixel coordinates.
    """
    u_left = (frame.left - grid.x0) / grid.res_x
    v_top = (grid.y0 - frame.top) / grid.res_y
    sx = grid.res_x / frame.res_x
    sy = grid.res_y / frame.res_y
    u_min, u_max = u_left + 0.5 / sx, u_left + (frame.width - 0.5) / sx
    v_min, v_max = v_top + 0.5 / sy, v_top + (frame.height - 0.5) / sy
    col0, col1 = math.floor(u_min) - halo, math.ceil(u_max) + halo
    row0, row1 = math.floor(v_min) - halo, math.ceil(v_max) + halo
    return SamplingPlan(
        col0=col0,
        row0=row0,
        col1=col1,
        row1=row1,
        origin=(u_left - col0, v_top - row0),
        scale=(sx, sy),
        out_shape=(frame.height, frame.width),
        pixel_offset=(
            round((frame.left - grid.x0) / frame.res_x),
            round((grid.y0 - frame.top) / frame.res_y),
        ),
    )


def window_frame(grid: Grid, plan: SamplingPlan) -> Frame:
    """The frame of a plan's LR window (grid pixels ``col0..col1`` x ``row0..row1``)."""
    rows, cols = plan.window_shape
    return Frame(
        grid.x0 + plan.col0 * grid.res_x,
        grid.y0 - plan.row0 * grid.res_y,
        grid.res_x,
        grid.res_y,
        rows,
        cols,
    )
