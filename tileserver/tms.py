"""Tile matrix sets: every one TiTiler serves (morecantile's 13) and the WMTS subset."""

from __future__ import annotations

from collections.abc import Iterable

from morecantile import TileMatrixSets
from morecantile import tms as morecantile_tms

SUPPORTED_TMS: TileMatrixSets = morecantile_tms
"""Tile routes, tilejson, tilesets and map.html accept all of morecantile's built-in TMS."""
DEFAULT_WMTS_TMS = ("WebMercatorQuad", "WorldCRS84Quad")
"""What WMTSCapabilities.xml lists by default: one document with all 13 is 194 KB and opens
the dataset once per TMS (about 0.4 s)."""


def tms_subset(names: Iterable[str]) -> TileMatrixSets:
    """The supported TMS named in ``names`` (``ValueError`` for an unknown name)."""
    names = list(names)
    unknown = sorted(set(names) - set(SUPPORTED_TMS.list()))
    if unknown:
        raise ValueError(f"unknown tile matrix sets {unknown}; known: {SUPPORTED_TMS.list()}")
    return TileMatrixSets({name: SUPPORTED_TMS.get(name) for name in names})
