"""Resource limits of a request, checked before anything large is allocated.

TiTiler-style dataclass dependencies (subclasses of TiTiler's own) validate the query
parameters that size a response: ``buffer``/``padding``, preview/bbox/feature sizes, bands
out of ``bidx``/``expression``/``assets``, ``histogram_bins``. ``check_request`` covers the
parameters that are not in a dataclass (``tilesize``, zoom ranges, ``algorithm_params``,
bbox corners, GeoJSON vertices). ``ReadLimits`` is what the reader checks on each read: the
output pixels and the source pixels GDAL would read (at the overview it would use).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import attr
import numpy as np
from fastapi import Request
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.models import ImageData
from titiler.core.dependencies import (
    AssetsExprParams,
    AssetsParams,
    BidxExprParams,
    HistogramParams,
    PartFeatureParams,
    PreviewParams,
    TileParams,
)

from tileserver.errors import BadParameterError, LimitExceededError
from tileserver.settings import Settings, get_settings

MAX_GEOMETRY_DENSIFY = 1000
"""Most points per edge of a generated STAC geometry (``/cog/stac?geometry_densify=``)."""
MAX_ZOOM_PARAMETER = 30
"""Deepest zoom a ``minzoom``/``maxzoom`` query parameter may name (no TMS goes deeper)."""


def _settings(request: Request | None) -> Settings:
    """The app's settings; the process's where a dependency is built without a request
    (TiTiler's WMTS extension instantiates the layer dependencies from query parameters)."""
    if request is None:
        return get_settings()
    return request.app.state.settings


def _check(what: str, value: float, limit: float, setting: str) -> None:
    if value > limit:
        raise LimitExceededError(what, value, limit, setting)


def _check_size(settings: Settings, max_size: int | None, width: int | None, height: int | None):
    """Output pixels of a sized image: width x height, or the square of the longest side."""
    if width and height:
        pixels = width * height
    else:
        side = max(width or 0, height or 0, max_size or 0)
        pixels = side * side
    _check("output pixels", pixels, settings.max_image_pixels, "max_image_pixels")


def _check_expression(settings: Settings, expression: str | None) -> None:
    if not expression:
        return
    _check(
        "expression length",
        len(expression),
        settings.max_expression_length,
        "max_expression_length",
    )
    _check("output bands", expression.count(";") + 1, settings.max_bands, "max_bands")


@dataclass
class _WithRequest:
    """Mixin: the dataclass carries the request (for the settings), kept out of ``as_dict``."""

    request: Request = field(default=None, repr=False)  # type: ignore[arg-type]

    def as_dict(self, exclude_none: bool = True) -> dict:
        """The dependency's options without the request."""
        values = super().as_dict(exclude_none)  # type: ignore[misc]
        values.pop("request", None)
        return values


@dataclass
class LimitedTileParams(_WithRequest, TileParams):
    """TiTiler's ``buffer``/``padding``, bounded by ``max_buffer``/``max_padding``."""

    def __post_init__(self) -> None:
        """Refuse a buffer or padding over its limit."""
        settings = _settings(self.request)
        _check("buffer", self.buffer or 0, settings.max_buffer, "max_buffer")
        _check("padding", self.padding or 0, settings.max_padding, "max_padding")


class _SizeLimited(_WithRequest):
    """Mixin over TiTiler's ``PreviewParams``/``PartFeatureParams``: ``max_size``,
    ``width`` and ``height`` bounded by ``max_image_pixels``."""

    def __post_init__(self) -> None:
        """Refuse an output image over the pixel limit."""
        super().__post_init__()  # type: ignore[misc]  # TiTiler's own checks
        size: Any = self
        _check_size(_settings(self.request), size.max_size, size.width, size.height)


@dataclass
class LimitedPreviewParams(_SizeLimited, PreviewParams):
    """TiTiler's preview size, bounded by ``max_image_pixels``."""


@dataclass
class LimitedPartFeatureParams(_SizeLimited, PartFeatureParams):
    """TiTiler's bbox/feature size, bounded by ``max_image_pixels``."""


@dataclass
class LimitedBidxExprParams(_WithRequest, BidxExprParams):
    """TiTiler's ``bidx``/``expression``, bounded by ``max_bands``/``max_expression_length``."""

    def __post_init__(self) -> None:
        """Refuse too many bands or too long an expression."""
        settings = _settings(self.request)
        _check("output bands", len(self.indexes or []), settings.max_bands, "max_bands")
        _check_expression(settings, self.expression)


def _check_assets(settings: Settings, assets: list[Any] | None) -> None:
    names = [a if isinstance(a, str) else a.get("name", "") for a in assets or []]
    if any(not name.strip() for name in names):
        raise BadParameterError("`assets` must name assets (an empty name was given)")
    _check("assets", len(names), settings.max_bands, "max_bands")


@dataclass
class LimitedAssetsParams(_WithRequest, AssetsParams):
    """TiTiler's STAC ``assets``: no empty asset name, at most ``max_bands`` assets."""

    def __post_init__(self) -> None:
        """Refuse an empty asset name or too many assets."""
        _check_assets(_settings(self.request), self.assets)


@dataclass
class LimitedAssetsExprParams(_WithRequest, AssetsExprParams):
    """TiTiler's STAC ``assets``/``expression``: no empty asset name, bounded counts."""

    def __post_init__(self) -> None:
        """Refuse an empty asset name, too many assets or too long an expression."""
        settings = _settings(self.request)
        _check_assets(settings, self.assets)
        _check_expression(settings, self.expression)


@dataclass
class LimitedHistogramParams(_WithRequest, HistogramParams):
    """TiTiler's ``histogram_bins``, bounded by ``max_histogram_bins``."""

    def __post_init__(self) -> None:
        """Refuse more bins (or bin edges) than the limit."""
        super().__post_init__()  # type: ignore[misc]  # parses bins and range
        bins: Any = self.bins
        edges = list(bins) if isinstance(bins, list | tuple) else []
        if any(low >= high for low, high in zip(edges, edges[1:], strict=False)):
            raise BadParameterError("histogram_bins edges must increase monotonically")
        count = (len(bins) - 1) if isinstance(bins, list | tuple) else int(bins or 0)
        limit = _settings(self.request).max_histogram_bins
        _check("histogram_bins", count, limit, "max_histogram_bins")


LIMITED_DEPENDENCIES: dict[str, Any] = {
    "tile_dependency": LimitedTileParams,
    "img_preview_dependency": LimitedPreviewParams,
    "img_part_dependency": LimitedPartFeatureParams,
    "histogram_dependency": LimitedHistogramParams,
}
"""Factory options of the bounded dependencies (both factories)."""
COG_DEPENDENCIES: dict[str, Any] = {"layer_dependency": LimitedBidxExprParams}
STAC_DEPENDENCIES: dict[str, Any] = {
    "layer_dependency": LimitedAssetsExprParams,
    "assets_dependency": LimitedAssetsParams,
}


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the route's own validation answers 422


async def check_request(request: Request) -> None:
    """Router-wide checks: ``tilesize``, ``minzoom``/``maxzoom``, ``algorithm_params``,
    bbox corners and the vertices of a GeoJSON body."""
    settings = _settings(request)
    tilesize = _int_param(request, "tilesize")
    if tilesize is not None:
        _check("tilesize", tilesize, settings.max_tilesize, "max_tilesize")
    for name in ("minzoom", "maxzoom"):
        zoom = _int_param(request, name)
        if zoom is not None and not 0 <= zoom <= MAX_ZOOM_PARAMETER:
            raise BadParameterError(f"{name} must be in 0..{MAX_ZOOM_PARAMETER}")
    densify = _int_param(request, "geometry_densify")
    if densify is not None and not 0 <= densify <= MAX_GEOMETRY_DENSIFY:
        raise BadParameterError(f"geometry_densify must be in 0..{MAX_GEOMETRY_DENSIFY}")
    params = request.query_params.get("algorithm_params")
    if params is not None:
        try:
            parsed = json.loads(params)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadParameterError("algorithm_params must be a JSON object")
    path = request.path_params
    if {"minx", "miny", "maxx", "maxy"} <= path.keys():
        try:
            minx, miny, maxx, maxy = (float(path[k]) for k in ("minx", "miny", "maxx", "maxy"))
        except (TypeError, ValueError):
            return
        if not (minx < maxx and miny < maxy):
            raise BadParameterError("bbox must have minx < maxx and miny < maxy")
    if request.method == "POST":
        body = await request.body()
        vertices = body.count(b"[")  # every position is one JSON array (rings add a few)
        _check("GeoJSON vertices", vertices, settings.max_feature_vertices, "max_feature_vertices")


@dataclass(frozen=True)
class ReadLimits:
    """Per-read limits the reader checks (defaults: the settings' defaults)."""

    max_image_pixels: int = 2048 * 2048
    max_source_pixels: int = 64 * 2**20

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        """The limits configured in ``settings``."""
        return cls(settings.max_image_pixels, settings.max_source_pixels)

    def check_output(self, width: int, height: int) -> None:
        """Refuse an output image over ``max_image_pixels``."""
        _check("output pixels", width * height, self.max_image_pixels, "max_image_pixels")

    def check_source(
        self, dataset: Any, window_size: tuple[float, float], out_size: tuple[int, int]
    ) -> None:
        """Refuse a read of ``window_size`` dataset pixels onto ``out_size`` whose source
        pixels, at the overview GDAL would pick, exceed ``max_source_pixels``."""
        pixels = source_pixels(dataset, window_size, out_size)
        _check("source pixels read", round(pixels), self.max_source_pixels, "max_source_pixels")


def source_pixels(dataset: Any, window_size: tuple[float, float], out_size: tuple[int, int]):
    """Pixels GDAL reads for a window onto an output: the window at the coarsest overview
    that is still at least as fine as the output."""
    win_w, win_h = window_size
    out_w, out_h = max(1, out_size[0]), max(1, out_size[1])
    decimation = min(win_w / out_w, win_h / out_h)
    factors = [f for f in dataset.overviews(1) if f <= decimation]
    factor = max(factors, default=1)
    return win_w * win_h / (factor * factor)


def dataset_window(
    dataset: Any, bbox: Any, bbox_crs: Any, clip: bool = True
) -> tuple[float, float]:
    """(width, height) in dataset pixels of ``bbox`` (clipped to the dataset unless ``clip``
    is false); the whole dataset when the bounds cannot be transformed."""
    try:
        if bbox_crs is not None and CRS.from_user_input(bbox_crs) != dataset.crs:
            bbox = transform_bounds(bbox_crs, dataset.crs, *bbox, densify_pts=21)
        window = from_bounds(*bbox, transform=dataset.transform)
        col0, row0 = window.col_off, window.row_off
        col1, row1 = col0 + window.width, row0 + window.height
        if clip:
            col0, row0 = max(0.0, col0), max(0.0, row0)
            col1, row1 = min(float(dataset.width), col1), min(float(dataset.height), row1)
        if not all(math.isfinite(v) for v in (col0, col1, row0, row1)):
            raise ValueError("bounds not finite")
    except Exception:
        return float(dataset.width), float(dataset.height)
    return max(0.0, col1 - col0), max(0.0, row1 - row0)


def output_size(
    dataset: Any,
    bbox: Any,
    bbox_crs: Any,
    window: tuple[float, float],
    width: int | None,
    height: int | None,
    max_size: int | None,
) -> tuple[int, int]:
    """The (width, height) rio-tiler will allocate for a read (near enough to bound it)."""
    if width and height:
        return width, height
    if bbox is not None:
        window = dataset_window(dataset, bbox, bbox_crs, clip=False)
    win_w, win_h = max(window[0], 1.0), max(window[1], 1.0)
    if width:
        return width, math.ceil(width * win_h / win_w)
    if height:
        return math.ceil(height * win_w / win_h), height
    if max_size:
        ratio = max_size / max(win_w, win_h)
        return math.ceil(win_w * ratio), math.ceil(win_h * ratio)
    return math.ceil(win_w), math.ceil(win_h)


FOOTPRINT_FRACTION = 0.25
"""A sized read whose bounds the dataset covers less than this fraction of reads only the
dataset's footprint."""


def clipped_part(
    reader: Any, bbox: Any, options: dict[str, Any], part: Callable[..., ImageData]
) -> ImageData | None:
    """A sized read of ``bbox`` made from a read of the dataset's footprint only, pasted into
    a masked image of the full size (same output pixel grid); None where it does not apply.

    GDAL's warper spends minutes on a low-zoom tile far larger than a projected dataset
    (transforming the whole tile extent) although the dataset covers a few of its pixels.
    """
    width, height = options.get("width"), options.get("height")
    dst_crs, bounds_crs = options.get("dst_crs"), options.get("bounds_crs")
    if not (width and height and dst_crs) or options.get("buffer") or options.get("padding"):
        return None
    if options.get("vrt_options") or (bounds_crs is not None and bounds_crs != dst_crs):
        return None
    left, bottom, right, top = bbox
    try:
        d_left, d_bottom, d_right, d_top = transform_bounds(
            reader.dataset.crs, dst_crs, *reader.dataset.bounds, densify_pts=21
        )
    except Exception:
        return None
    i_left, i_right = max(left, d_left), min(right, d_right)
    i_bottom, i_top = max(bottom, d_bottom), min(top, d_top)
    if i_left >= i_right or i_bottom >= i_top:
        raise TileOutsideBounds("the requested area does not intersect the dataset")
    area = (right - left) * (top - bottom)
    if (i_right - i_left) * (i_top - i_bottom) >= FOOTPRINT_FRACTION * area:
        return None
    res_x, res_y = (right - left) / width, (top - bottom) / height
    col0 = max(0, math.floor((i_left - left) / res_x))
    col1 = min(width, math.ceil((i_right - left) / res_x))
    row0 = max(0, math.floor((top - i_top) / res_y))
    row1 = min(height, math.ceil((top - i_bottom) / res_y))
    sub = (left + col0 * res_x, top - row1 * res_y, left + col1 * res_x, top - row0 * res_y)
    img = part(sub, **{**options, "width": col1 - col0, "height": row1 - row0})
    data = np.zeros((img.count, height, width), dtype=img.array.dtype)
    mask = np.ones(data.shape, dtype=bool)
    data[:, row0:row1, col0:col1] = img.array.data
    mask[:, row0:row1, col0:col1] = np.ma.getmaskarray(img.array)
    return attr.evolve(img, array=np.ma.MaskedArray(data, mask=mask), bounds=tuple(bbox))
