"""Zoom facts of a dataset in one TMS: native zoom, first super-resolved zoom, SR maxzoom.

A function of the dataset's native resolution and zoom, the TMS, the advertised tile size
and the SR scales; the readers use it for their maxzoom, and the tilejson and WMTS
descriptions compute it from the source they open (``tileserver.factories``).
"""

from __future__ import annotations

from dataclasses import dataclass

from morecantile import TileMatrixSet

from tileserver.tile_geometry import sr_zoom_range


@dataclass(frozen=True)
class ZoomInfo:
    """Zoom range of a dataset in one TMS, for the tile size of the advertised URLs."""

    native_zoom: int
    sr_from_zoom: int
    maxzoom: int
    tilesize: int

    def describe(self) -> str:
        """One sentence for tilejson descriptions and WMTS abstracts."""
        if self.sr_from_zoom < 0 or self.sr_from_zoom > self.maxzoom:
            return f"Native resolution up to zoom {self.maxzoom}; no super-resolved zooms."
        return (
            f"Native resolution at zoom {self.native_zoom}; zooms {self.sr_from_zoom}"
            f"-{self.maxzoom} ({self.tilesize}px tiles) are super-resolved on demand."
        )


def zoom_info(
    tms: TileMatrixSet,
    native_res: tuple[float, float],
    native_zoom: int,
    tilesize: int,
    min_scale: float,
    max_scale: float,
) -> ZoomInfo:
    """The zoom facts of a dataset of pixel size ``native_res`` (TMS CRS) whose native zoom
    is ``native_zoom``, for ``tilesize``-px tiles and SR between the two scales."""
    first_sr, deepest = sr_zoom_range(tms, native_res, tilesize, min_scale, max_scale)
    return ZoomInfo(
        native_zoom=native_zoom,
        sr_from_zoom=first_sr,
        maxzoom=max(native_zoom, deepest),
        tilesize=tilesize,
    )
