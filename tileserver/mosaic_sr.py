"""One SR read across the COGs of a mosaic tile (decision 0202).

titiler.mosaic super-resolves every COG alone and pastes the results: each COG's halo
lacks its neighbour's pixels and its mask stops short of its edge, so a seam shows along
every COG boundary. Here, on SR zooms, the tile's COGs that share one source grid (same
CRS and pixel size, origins a whole number of pixels apart) are read as ONE window of
that grid, first valid pixel wins in the mosaic's asset order (titiler's ``first``), and
the model runs once on it, exactly as ``SRReader`` reads a single COG. COGs on different
grids fall back to titiler's per-COG SR (no reprojection, which would add a resampling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import attr
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from rio_tiler.models import ImageData

from tileserver.profiles import DatasetProfile
from tileserver.reader import SRReader
from tileserver.tile_geometry import Grid

GRID_TOLERANCE_PX = 1e-4
"""Origins closer than this to a whole pixel offset count as the same grid."""

NOT_MERGED_OPTIONS = ("pixel_selection", "threads", "chunk_size", "allowed_exceptions")
"""Options of titiler's mosaic read that are not tile options of a reader."""


@dataclass(frozen=True)
class SourceGrid:
    """The pixel grid of a source: CRS, affine transform, band count and dtypes."""

    crs: CRS
    transform: Affine
    count: int
    dtypes: tuple[str, ...]

    @classmethod
    def of(cls, dataset: Any) -> SourceGrid:
        """The grid of an open rasterio dataset."""
        return cls(dataset.crs, dataset.transform, dataset.count, tuple(dataset.dtypes))

    def offset_of(self, other: SourceGrid) -> tuple[int, int] | None:
        """Where ``other``'s pixel (0, 0) lies on this grid, (col, row); None when ``other``
        is on another grid (CRS, pixel size, rotation, bands or a fractional offset)."""
        if (self.crs, self.count, self.dtypes) != (other.crs, other.count, other.dtypes):
            return None
        mine, theirs = self.transform, other.transform
        if not np.allclose(mine[:2] + mine[3:5], theirs[:2] + theirs[3:5], rtol=1e-9, atol=0):
            return None
        col, row = ~mine * (theirs.c, theirs.f)
        if max(abs(col - round(col)), abs(row - round(row))) > GRID_TOLERANCE_PX:
            return None
        return round(col), round(row)


@dataclass(frozen=True)
class MosaicGrid:
    """The grid every SR tile of a mosaic uses: the source grid of the mosaic's first COG
    and its native resolution in the TMS CRS (so the scale, and the intermediate grid past
    ``sr_max_scale``, do not depend on which COG happens to come first in a tile)."""

    source: SourceGrid
    native_res: tuple[float, float]


def _merged_profile(profiles: Sequence[DatasetProfile]) -> DatasetProfile:
    """One normalization for the merged window: the union of the COGs' value ranges."""
    return DatasetProfile(
        band_min=np.minimum.reduce([p.band_min for p in profiles]),
        band_max=np.maximum.reduce([p.band_max for p in profiles]),
        categorical=any(p.categorical for p in profiles),
        continuous_single_band=any(p.continuous_single_band for p in profiles),
    )


def _overlaps(dataset: Any, window: Window) -> bool:
    return (
        window.col_off < dataset.width
        and window.row_off < dataset.height
        and window.col_off + window.width > 0
        and window.row_off + window.height > 0
    )


@attr.s
class MosaicWindowReader(SRReader):
    """``SRReader`` whose source window is completed, pixel by pixel, by the COGs joined to
    it (``join``): where its own pixel is invalid, the first joined COG with a valid one
    gives it."""

    def __attrs_post_init__(self) -> None:
        """Open as ``SRReader``; nothing joined yet."""
        super().__attrs_post_init__()
        self.neighbours: list[tuple[SRReader, tuple[int, int]]] = []

    def join(self, others: Sequence[SRReader], mosaic_grid: MosaicGrid | None) -> bool:
        """Read ``others`` (in order) into this reader's windows; False, joining nothing,
        when one of them is on another grid. On the mosaic's grid, use its resolution."""
        mine = SourceGrid.of(self.dataset)
        neighbours = []
        for other in others:
            offset = mine.offset_of(SourceGrid.of(other.dataset))
            if offset is None:
                return False
            neighbours.append((other, offset))
        self.neighbours = neighbours
        profiles = [self.profile, *(other.profile for other in others)]
        self.__dict__["profile"] = _merged_profile(profiles)
        if mosaic_grid is not None and mosaic_grid.source.offset_of(mine) is not None:
            self.native_res = mosaic_grid.native_res
            self.grid = Grid(self.grid.x0, self.grid.y0, *mosaic_grid.native_res)
        return True

    def _read_window(self, bands: list[int], window: Window) -> np.ma.MaskedArray:
        """The window on this COG's grid, invalid pixels taken from the joined COGs."""
        values = super()._read_window(bands, window)
        data, mask = values.data, np.ma.getmaskarray(values)
        for other, (col, row) in self.neighbours:
            missing = mask.any(axis=0)
            if not missing.any():
                break
            shifted = Window(
                window.col_off - col, window.row_off - row, window.width, window.height
            )
            if not _overlaps(other.dataset, shifted):
                continue
            theirs = other._read_window(bands, shifted)
            their_mask = np.ma.getmaskarray(theirs)
            take = missing & ~their_mask.any(axis=0)
            data = np.where(take, theirs.data, data)
            mask = np.where(take, their_mask, mask)
        return np.ma.MaskedArray(data, mask=mask)


def seamless_sr_tile(
    open_reader: Callable[[str], MosaicWindowReader],
    assets: Sequence[str],
    tile: tuple[int, int, int],
    mosaic_grid: MosaicGrid | None,
    options: dict[str, Any],
) -> tuple[ImageData, list[str]] | None:
    """The SR tile of ``assets`` read as one window, and the assets that cover it; None
    when titiler's per-COG read must make the tile (not an SR zoom, no COG covers it, or
    COGs on different grids)."""
    x, y, z = tile
    with ExitStack() as stack:
        covering = []
        for asset in assets:
            reader = stack.enter_context(open_reader(asset))
            if reader.tile_exists(x, y, z):
                covering.append((asset, reader))
        if not covering:
            return None
        first, *others = (reader for _, reader in covering)
        if not first.join(others, mosaic_grid):
            return None
        if not first.super_resolves(x, y, z, options.get("tilesize")):
            return None
        tile_options = {k: v for k, v in options.items() if k not in NOT_MERGED_OPTIONS}
        image = first.tile(x, y, z, **tile_options)
    used = [asset for asset, _ in covering]
    image.assets = used
    return image, used
