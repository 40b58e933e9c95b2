"""Zoom facts of a dataset in one TMS: native zoom, first super-resolved zoom, SR maxzoom;
and the memo of first super-resolved zooms that readers found (``SRZoomMemo``).

A function of the dataset's native resolution and zoom, the TMS, the advertised tile size
and the SR scales; the readers use it for their maxzoom, and the tilejson and WMTS
descriptions compute it from the source they open (``tileserver.factories``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cachetools import TTLCache
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


MemoKey = tuple[str, str, int]
"""(canonical dataset URL, TMS id, advertised tile size)."""


class SRZoomMemo:
    """The first super-resolved zoom of each dataset, TMS and tile size, as readers found
    it; entries expire after ``ttl_s`` (a replaced file may have another resolution)."""

    def __init__(self, max_entries: int = 1024, ttl_s: float = 600.0) -> None:
        self._zooms: TTLCache[MemoKey, int] = TTLCache(max_entries, ttl_s)
        self._lock = threading.Lock()

    def record(self, key: MemoKey, sr_from_zoom: int) -> None:
        """Remember that tiles of ``key`` from ``sr_from_zoom`` on are super-resolved."""
        with self._lock:
            self._zooms[key] = sr_from_zoom

    def sr_from_zoom(self, key: MemoKey) -> int | None:
        """The first super-resolved zoom of ``key``, or ``None`` when not known."""
        with self._lock:
            return self._zooms.get(key)
