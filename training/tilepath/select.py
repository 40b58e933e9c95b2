"""Which tile pixels are scored: those of WebMercatorQuad tiles whose centre falls on a fine
pixel that is valid, covered by valid coarse data ``margin`` coarse pixels deep at every
scale (the resampling kernels' support), and inside the scene's test areas.

Whole tiles inside a test area are rare on small scenes (a 256-px tile at native zoom is
wider than the test stripe of three of the four georeferenced scenes), so tiles that
overlap the scored area are served whole and scored on that area only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from morecantile import Tile, TileMatrixSet
from rasterio.warp import transform, transform_bounds
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from training.tilepath.scenes import Raster

Window = tuple[int, int, int, int]  # (col0, row0, col1, row1), end-exclusive
TMS_TILE_SIZE = 256
LATTICE = 17  # points per axis where tile pixel centres are transformed exactly


@dataclass
class ScoredTile:
    """A tile to request and the mask (tile_size x tile_size) of its pixels that are scored."""

    tile: Tile
    mask: np.ndarray


def request_zoom(native_zoom: int, tile_size: int) -> int:
    """The zoom whose ``tile_size``-px tiles have the resolution of the native zoom's
    256-px tiles (``tile_size`` a power of two from 16 to 1024)."""
    if tile_size not in (16, 32, 64, 128, 256, 512, 1024):
        raise ValueError(f"tile size must be a power of two from 16 to 1024, got {tile_size}")
    return native_zoom + int(math.log2(TMS_TILE_SIZE / tile_size))


def evaluable_mask(
    fine: Raster, scales: list[int], margin: int, windows: list[Window] | None
) -> np.ndarray:
    """Fine pixels that are valid, covered by valid data at least ``margin`` coarse pixels
    deep at every scale, and inside ``windows`` (None: the whole scene)."""
    height, width = fine.shape
    ok = fine.valid.copy()
    for s in scales:
        h, w = height // s, width // s
        coarse = fine.valid[: h * s, : w * s].reshape(h, s, w, s).all((1, 3))
        if margin:
            square = np.ones((3, 3), dtype=bool)
            coarse = ndimage.binary_erosion(coarse, square, iterations=margin, border_value=0)
        deep = np.zeros_like(ok)
        deep[: h * s, : w * s] = coarse.repeat(s, 0).repeat(s, 1)
        ok &= deep
    if windows is not None:
        inside = np.zeros_like(ok)
        for col0, row0, col1, row1 in windows:
            inside[row0:row1, col0:col1] = True
        ok &= inside
    return ok


def tile_mask(
    tms: TileMatrixSet, tile: Tile, tile_size: int, fine: Raster, ok: np.ndarray
) -> np.ndarray:
    """``ok`` looked up (nearest) at the centres of the tile's ``tile_size`` x ``tile_size``
    pixels, transformed into the scene's pixel grid (exactly on a 17 x 17 lattice, linearly
    in between: far below a pixel over one tile)."""
    left, bottom, right, top = tms.xy_bounds(tile)
    lattice = np.linspace(0.5, tile_size - 0.5, LATTICE)
    gx, gy = np.meshgrid(
        left + lattice * (right - left) / tile_size, top - lattice * (top - bottom) / tile_size
    )
    sx, sy = transform(tms.rasterio_crs, fine.crs, gx.ravel(), gy.ravel())
    cols, rows = ~fine.transform * (np.asarray(sx), np.asarray(sy))
    centres = np.arange(tile_size) + 0.5
    query = np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1)
    at = lambda v: RegularGridInterpolator((lattice, lattice), v.reshape(LATTICE, LATTICE))  # noqa: E731
    cols, rows = (
        np.floor(at(cols)(query)).astype(np.int64),
        np.floor(at(rows)(query)).astype(np.int64),
    )
    height, width = fine.shape
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    mask = np.zeros(cols.shape, dtype=bool)
    mask[inside] = ok[rows[inside], cols[inside]]
    return mask


def choose_tiles(
    tms: TileMatrixSet,
    zoom: int,
    tile_size: int,
    fine: Raster,
    ok: np.ndarray,
    count: int,
    min_fraction: float,
) -> list[ScoredTile]:
    """Up to ``count`` tiles at ``zoom`` over the scored area with the most scored pixels (at
    least ``min_fraction`` of the tile), evenly spread when more tiles are full than needed."""
    if not ok.any():
        return []
    rows, cols = np.nonzero(ok.any(axis=1))[0], np.nonzero(ok.any(axis=0))[0]
    x0, y0 = fine.transform * (int(cols[0]), int(rows[0]))
    x1, y1 = fine.transform * (int(cols[-1]) + 1, int(rows[-1]) + 1)
    west, south, east, north = transform_bounds(
        fine.crs, "EPSG:4326", min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), densify_pts=21
    )
    candidates = []
    for tile in tms.tiles(west, south, east, north, zooms=[zoom]):
        mask = tile_mask(tms, tile, tile_size, fine, ok)
        if mask.mean() >= min_fraction:
            candidates.append(ScoredTile(tile, mask))
    candidates.sort(key=lambda c: (c.tile.y, c.tile.x))
    full = [c for c in candidates if c.mask.all()]
    if len(full) >= count:
        picks = np.unique(np.linspace(0, len(full) - 1, count).round().astype(int))
        return [full[i] for i in picks]
    return sorted(candidates, key=lambda c: -int(c.mask.sum()))[:count]
