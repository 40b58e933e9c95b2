"""Tile geometry: effective scale, SR zoom range, and where tile pixels fall on the source.

An SR tile is sampled at its pixel centres mapped into the source's own pixel grid
(``source_field``): the source is read unwarped, and the upscaler's interpolation is the
only resampling. The effective scale of a zoom (``zoom_scale``) compares the tile's pixel
size with the dataset's native pixel size in the TMS CRS (rio-tiler's estimate).

Past ``sr_max_scale`` the tile is first super-resolved on a global intermediate grid
(``Grid``: native pixel size / max scale in the TMS CRS, anchored at the TMS origin) and
finished with bicubic at exact coordinates (``plan_sampling``, ``window_frame``), so that
neighbouring deep tiles share the intermediate pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.warp import transform
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


def frame_centres(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) of every pixel centre of ``frame`` in its CRS, each (height, width) float64."""
    xs = frame.left + (np.arange(frame.width, dtype=np.float64) + 0.5) * frame.res_x
    ys = frame.top - (np.arange(frame.height, dtype=np.float64) + 0.5) * frame.res_y
    return np.broadcast_to(xs[None, :], (frame.height, frame.width)), np.broadcast_to(
        ys[:, None], (frame.height, frame.width)
    )


def source_field(frame: Frame, frame_crs: CRS, src_crs: CRS, src_transform: Affine) -> np.ndarray:
    """Where each pixel centre of ``frame`` lies on the source's own pixel grid: (H, W, 2)
    float64 (col, row), pixel (i, j) covering [j, j+1) x [i, i+1).

    Every centre is transformed exactly (``rasterio.warp.transform``, no approximation),
    so the same ground point maps to the same source position whichever tile asks.
    """
    xs, ys = frame_centres(frame)
    if frame_crs != src_crs:
        tx, ty = transform(frame_crs, src_crs, xs.ravel(), ys.ravel())
        xs = np.asarray(tx, dtype=np.float64).reshape(xs.shape)
        ys = np.asarray(ty, dtype=np.float64).reshape(ys.shape)
    inverse = ~src_transform
    cols = inverse.a * xs + inverse.b * ys + inverse.c
    rows = inverse.d * xs + inverse.e * ys + inverse.f
    return np.stack([cols, rows], axis=-1)


def field_window(field: np.ndarray, halo: int) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1): the source pixels the field samples, plus ``halo`` each side."""
    finite = field[np.isfinite(field).all(axis=-1)]
    if finite.size == 0:
        raise ValueError("no pixel of the tile maps onto the source")
    col0 = math.floor(float(finite[:, 0].min())) - halo
    row0 = math.floor(float(finite[:, 1].min())) - halo
    col1 = math.ceil(float(finite[:, 0].max())) + halo
    row1 = math.ceil(float(finite[:, 1].max())) + halo
    return col0, row0, col1, row1
