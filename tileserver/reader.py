"""SR-aware rio-tiler readers: advertise deeper zooms and super-resolve tiles past native.

``SRReader.tile`` computes the tile's own scale ``s = native resolution / tile resolution``
in the TMS CRS. At ``s <= sr_min_scale`` (or ``sr=off``) it returns rio-tiler's own tile.
Above, it maps every tile pixel centre into the source's own pixel grid (exact, any source
CRS and any TMS), reads that window of the source unwarped with its mask and the model's
halo, normalizes it with dataset-level statistics, fills invalid pixels from their nearest
valid neighbour and hands window and coordinate field to ``SRBackend.upscale_tile``: the
upscaler's interpolation is the only resampling (decision 0203). The tile's mask is the
source mask at each pixel's nearest source pixel. Deeper than ``sr_max_scale`` the tile is
super-resolved at the maximum scale on that scale's global grid and finished with bicubic
at exact coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import attr
import numpy as np
import pystac
from rasterio.windows import Window
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import InvalidBufferSize, TileOutsideBounds
from rio_tiler.expression import parse_expression
from rio_tiler.io import Reader, STACReader
from rio_tiler.models import ImageData
from rio_tiler.types import AssetInfo, AssetType
from rio_tiler.utils import non_alpha_indexes
from scipy import ndimage

from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import regular_field
from sr_engine.modes import AUTO, OFF
from tileserver.limits import ReadLimits, clipped_part, dataset_window, output_size
from tileserver.profiles import DatasetProfile, ProfileCache
from tileserver.security import Allowlist
from tileserver.sr_backend import SRBackend
from tileserver.sr_report import SRReport, current_report
from tileserver.sr_zooms import SRZoomMemo, ZoomInfo, zoom_info
from tileserver.tile_geometry import (
    Frame,
    Grid,
    field_window,
    native_resolution,
    plan_sampling,
    source_field,
    tile_frame,
    tms_origin,
    window_frame,
)


@dataclass(frozen=True)
class SRConfig:
    """What the readers need from the application: scales, upscaler backend, allowlist."""

    min_scale: float
    max_scale: float
    backend: SRBackend
    allowlist: Allowlist
    read_limits: ReadLimits = field(default_factory=ReadLimits)
    profiles: ProfileCache = field(default_factory=ProfileCache)
    """The application's dataset profiles (normalization range, kind)."""
    sr_zooms: SRZoomMemo = field(default_factory=SRZoomMemo)
    """First super-resolved zoom per dataset, TMS and tile size (early SR admission)."""


def _fill_masked(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by their nearest valid neighbour (so nodata never bleeds in)."""
    if valid.all():
        return values
    rows, cols = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return values[:, rows, cols]


def _sample_mask(valid: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``valid`` (h, w) sampled at ``coords`` (H, W, 2) by nearest pixel: a tile pixel is
    valid when the source pixel it lies in is (outside the window: invalid)."""
    cols = np.floor(coords[..., 0])
    rows = np.floor(coords[..., 1])
    inside = (cols >= 0) & (rows >= 0) & (cols < valid.shape[1]) & (rows < valid.shape[0])
    cols = np.where(inside, cols, 0).astype(np.intp)
    rows = np.where(inside, rows, 0).astype(np.intp)
    return valid[rows, cols] & inside


def _band_indexes(dataset: Any, indexes: Any) -> list[int]:
    """1-based bands to read: the requested ones, else every band but alpha (as rio-tiler)."""
    if indexes is None:
        return list(non_alpha_indexes(dataset))
    return [int(indexes)] if isinstance(indexes, int) else [int(i) for i in indexes]


@attr.s
class SRReader(Reader):
    """rio-tiler ``Reader`` that advertises SR zooms and super-resolves deep tiles.

    Attributes:
        sr_mode: ``auto|off|bicubic|fast|diffusion`` (the ``sr`` query parameter).
        advertised_tilesize: tile size of the URLs the request advertises (maxzoom depends on it).
        sr_config: scales, backend and allowlist of the application.
        sr_report: where to record what was done (default: the request's ``SRReport``;
            given explicitly where rio-tiler reads in its own thread pool, e.g. STAC assets).
    """

    sr_mode: str = attr.ib(default=AUTO, kw_only=True)
    advertised_tilesize: int = attr.ib(default=256, kw_only=True)
    sr_config: SRConfig = attr.ib(kw_only=True)
    sr_report: SRReport | None = attr.ib(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        """Open the dataset, then compute its native grid and SR zoom range in the TMS."""
        super().__attrs_post_init__()
        self.report = self.sr_report or current_report()
        self.native_res = native_resolution(self)
        x0, y0 = tms_origin(self.tms)
        self.grid = Grid(x0, y0, *self.native_res)
        self.zoom_info = _zoom_info(self, self.native_res, super().maxzoom)

    @cached_property
    def profile(self) -> DatasetProfile:
        """The dataset's profile, looked up once per reader (the cache key stats the file)."""
        return self.sr_config.profiles.get(self, self.sr_config.allowlist.remote_version)

    def _band_range(self, band_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-band (min, max) of the named bands (``b1``...), shaped (C, 1, 1)."""
        band_idx = [int(name[1:]) - 1 for name in band_names]
        lo = self.profile.band_min[band_idx].reshape(-1, 1, 1)
        hi = self.profile.band_max[band_idx].reshape(-1, 1, 1)
        return lo, hi

    @property
    def maxzoom(self) -> int:
        """Deepest zoom whose scale, at the advertised tile size, is at most ``sr_max_scale``."""
        return self.zoom_info.maxzoom

    @property
    def native_maxzoom(self) -> int:
        """rio-tiler's own maxzoom (nearest zoom to the native resolution)."""
        return super().maxzoom

    def tile(  # type: ignore[override]
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        tilesize: int | None = None,
        indexes: Any = None,
        expression: str | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """Read a tile: rio-tiler's own at ``s <= sr_min_scale``, super-resolved above."""
        if not self.tile_exists(tile_x, tile_y, tile_z):
            raise TileOutsideBounds(f"Tile {tile_z}/{tile_x}/{tile_y} is outside bounds")
        size = tilesize or self.tms.matrix(tile_z).tileWidth
        frame = tile_frame(self.tms, tile_x, tile_y, tile_z, size)
        if buffer:  # rio-tiler's rule: multiples of 0.5 px, the tile grows by 2 * buffer
            if (2 * buffer) % 1:
                raise InvalidBufferSize("buffer must be a multiple of 0.5")
            grow = int(2 * buffer)
            frame = Frame(
                frame.left - buffer * frame.res_x,
                frame.top + buffer * frame.res_y,
                frame.res_x,
                frame.res_y,
                size + grow,
                size + grow,
            )
        scale = (self.grid.res_x / frame.res_x, self.grid.res_y / frame.res_y)
        report = self.report
        if not self._should_super_resolve(scale):
            report.record(OFF, scale, "none")
            return super().tile(
                tile_x,
                tile_y,
                tile_z,
                tilesize=tilesize,
                indexes=indexes,
                expression=expression,
                buffer=buffer,
                **kwargs,
            )
        if expression:
            indexes = parse_expression(expression)
        image, mode, model = self._super_resolve(frame, scale, indexes, kwargs)
        report.record(mode, scale, model)
        return image.apply_expression(expression) if expression else image

    def part(self, bbox: Any, *args: Any, **kwargs: Any) -> ImageData:  # type: ignore[override]
        """rio-tiler's ``part`` within the read limits; a tile far larger than the dataset
        reads only the dataset's footprint (GDAL's warp of a whole low-zoom tile takes minutes)."""
        bounds_crs = kwargs.get("bounds_crs", WGS84_CRS)
        dst_crs = kwargs.get("dst_crs") or bounds_crs
        width, height, max_size = kwargs.get("width"), kwargs.get("height"), kwargs.get("max_size")
        window = dataset_window(self.dataset, bbox, bounds_crs)
        out = output_size(self.dataset, bbox, bounds_crs, window, width, height, max_size)
        self.sr_config.read_limits.check_output(*out)
        self.sr_config.read_limits.check_source(self.dataset, window, out)
        options = {**kwargs, "bounds_crs": bounds_crs, "dst_crs": dst_crs}
        clipped = None if args else clipped_part(self, bbox, options, super().part)
        return clipped if clipped is not None else super().part(bbox, *args, **kwargs)

    def read(self, *args: Any, **kwargs: Any) -> ImageData:  # type: ignore[override]
        """rio-tiler's ``read`` (previews) within the read limits."""
        dataset: Any = self.dataset
        window = (float(dataset.width), float(dataset.height))
        width, height, max_size = kwargs.get("width"), kwargs.get("height"), kwargs.get("max_size")
        out = output_size(dataset, None, None, window, width, height, max_size)
        self.sr_config.read_limits.check_output(*out)
        self.sr_config.read_limits.check_source(dataset, window, out)
        return super().read(*args, **kwargs)

    def super_resolves(self, tile_x: int, tile_y: int, tile_z: int, tilesize: int | None) -> bool:
        """Whether ``tile(tile_x, tile_y, tile_z, tilesize)`` super-resolves (rather than
        returning rio-tiler's tile)."""
        size = tilesize or self.tms.matrix(tile_z).tileWidth
        frame = tile_frame(self.tms, tile_x, tile_y, tile_z, size)
        return self._should_super_resolve(
            (self.grid.res_x / frame.res_x, self.grid.res_y / frame.res_y)
        )

    def _should_super_resolve(self, scale: tuple[float, float]) -> bool:
        if self.sr_mode == OFF or max(scale) <= self.sr_config.min_scale:
            return False
        if self.profile.categorical:
            return False
        return not (self.sr_mode == AUTO and self.profile.continuous_single_band)

    def _super_resolve(
        self,
        frame: Frame,
        scale: tuple[float, float],
        indexes: Any,
        read_options: dict[str, Any],
    ) -> tuple[ImageData, str, str]:
        """Super-resolve ``frame``, whose scale against the native resolution is ``scale``.

        Up to ``sr_max_scale`` the upscaler samples the source window at the frame's pixel
        centres (one resampling). Deeper, it super-resolves the frame's footprint on the
        global grid of the maximum scale, and bicubic at exact coordinates finishes.
        """
        backend, role = self.sr_config.backend, self.report.model_role
        memo_key = (str(self.input), self.tms.id or "", self.advertised_tilesize)
        self.sr_config.sr_zooms.record(memo_key, self.zoom_info.sr_from_zoom)
        resolved = backend.resolve(self.sr_mode, role)
        backend.admit(resolved)  # an overloaded runtime refuses before the read
        halo = max(resolved.halo, int(read_options.get("padding") or 0))
        max_scale = self.sr_config.max_scale
        if max(scale) <= max_scale:
            data, coords, valid, meta = self._read_source(frame, indexes, read_options, halo)
            hr, mode, model = backend.upscale_tile(
                data, coords, self._pixel_offset(frame), resolved, role
            )
            return self._to_image(hr, valid, frame, meta), mode, model
        mid_grid = Grid(
            self.grid.x0,
            self.grid.y0,
            self.grid.res_x / min(max_scale, scale[0]),
            self.grid.res_y / min(max_scale, scale[1]),
        )
        finish = plan_sampling(mid_grid, frame, BicubicUpscaler.halo)
        mid_frame = window_frame(mid_grid, finish)
        data, coords, valid, meta = self._read_source(mid_frame, indexes, read_options, halo)
        mid, mode, model = backend.upscale_tile(
            data, coords, self._pixel_offset(mid_frame), resolved, role
        )
        field = regular_field(np.asarray([finish.origin]), finish.scale, finish.out_shape)[0]
        hr = backend.bicubic_tile(mid, field)
        return self._to_image(hr, _sample_mask(valid, field), frame, meta), mode, model

    def _pixel_offset(self, frame: Frame) -> tuple[int, int]:
        """Absolute (col, row) of the frame's pixel (0, 0) on its resolution's global grid."""
        return (
            round((frame.left - self.grid.x0) / frame.res_x),
            round((self.grid.y0 - frame.top) / frame.res_y),
        )

    def _read_source(
        self, frame: Frame, indexes: Any, read_options: dict[str, Any], halo: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, ImageData]:
        """The unwarped source window under ``frame`` (plus ``halo``), normalized to [0, 1]
        with invalid pixels filled from their nearest valid neighbour; the coordinate field
        of the frame's pixel centres in that window; the frame's validity (nearest source
        pixel valid); and the window as an ``ImageData`` (band names, nodata, metadata)."""
        dataset: Any = self.dataset
        field = source_field(frame, self.tms.rasterio_crs, dataset.crs, dataset.transform)
        col0, row0, col1, row1 = field_window(field, halo)
        bands = _band_indexes(dataset, indexes)
        window = Window(col0, row0, col1 - col0, row1 - row0)
        limits = self.sr_config.read_limits
        limits.check_output(frame.width, frame.height)
        limits.check_source(dataset, (window.width, window.height), (window.width, window.height))
        nodata = read_options.get("nodata")
        values = self._read_window(bands, window)
        mask = np.asarray(np.ma.getmaskarray(values).any(axis=0))
        if nodata is not None:
            mask |= (values.data == nodata).any(axis=0)
        valid = ~mask
        img = ImageData(
            np.ma.MaskedArray(values.data, mask=np.broadcast_to(mask, values.shape)),
            band_names=[f"b{i}" for i in bands],
            band_descriptions=[dataset.descriptions[i - 1] or "" for i in bands],
            crs=dataset.crs,
            nodata=nodata if nodata is not None else dataset.nodata,
            scales=[dataset.scales[i - 1] for i in bands],
            offsets=[dataset.offsets[i - 1] for i in bands],
            metadata=dataset.tags(),
        )
        coords = field - np.array([col0, row0], dtype=np.float64)
        lo, hi = self._band_range(img.band_names)
        normalized = ((values.data.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        normalized = np.clip(_fill_masked(normalized, valid), 0.0, 1.0)
        return normalized, coords, _sample_mask(valid, coords), img

    def _read_window(self, bands: list[int], window: Window) -> np.ma.MaskedArray:
        """``bands`` of the source window, unwarped and masked (outside the source: masked)."""
        dataset: Any = self.dataset
        return dataset.read(bands, window=window, boundless=True, masked=True)

    def _to_image(
        self, hr: np.ndarray, valid: np.ndarray, frame: Frame, meta: ImageData
    ) -> ImageData:
        """Denormalize ``hr`` to the dataset's value range and dtype, as an ``ImageData``."""
        lo, hi = self._band_range(meta.band_names)
        values = hr.astype(np.float64) * (hi - lo) + lo
        dtype = meta.array.dtype
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        mask = np.broadcast_to(~valid, values.shape)
        return ImageData(
            np.ma.MaskedArray(values.astype(dtype), mask=mask),
            assets=meta.assets,
            bounds=frame.bounds,
            crs=self.tms.rasterio_crs,
            band_names=meta.band_names,
            band_descriptions=meta.band_descriptions,
            dataset_statistics=meta.dataset_statistics,
            metadata=meta.metadata,
            nodata=meta.nodata,
            scales=meta.scales,
            offsets=meta.offsets,
        )


def _zoom_info(reader: Any, native_res: tuple[float, float], native_zoom: int) -> ZoomInfo:
    """The zoom facts of an SR reader's dataset in its TMS, at its advertised tile size."""
    config: SRConfig = reader.sr_config
    return zoom_info(
        reader.tms,
        native_res,
        native_zoom,
        reader.advertised_tilesize,
        config.min_scale,
        config.max_scale,
    )


@attr.s
class SRSTACReader(STACReader):
    """``STACReader`` whose item fetch and asset hrefs go through the allowlist, reading
    assets with ``SRReader`` and advertising its SR zooms."""

    reader: type[Reader] = attr.ib(default=SRReader)
    sr_mode: str = attr.ib(default=AUTO, kw_only=True)
    advertised_tilesize: int = attr.ib(default=256, kw_only=True)
    sr_config: SRConfig = attr.ib(kw_only=True)

    def __attrs_post_init__(self) -> None:
        """Fetch the item through the allowlist, then raise maxzoom to the SR zoom range."""
        if self.item is None:
            data = self.sr_config.allowlist.fetch_json(str(self.input))
            self.item = pystac.Item.from_dict(data, href=self.input)
        user_maxzoom = self.maxzoom
        super().__attrs_post_init__()
        self.reader_options = {
            **self.reader_options,
            "sr_mode": self.sr_mode,
            "advertised_tilesize": self.advertised_tilesize,
            "sr_config": self.sr_config,
            "sr_report": current_report(),  # asset reads run in rio-tiler's thread pool
        }
        self.zoom_info: ZoomInfo | None = None
        if user_maxzoom is None and self.maxzoom is not None and self.transform is not None:
            self.zoom_info = _zoom_info(self, native_resolution(self), self.maxzoom)
            self.maxzoom = self.zoom_info.maxzoom

    def _get_asset_info(self, asset: AssetType) -> AssetInfo:
        """Asset info whose URL passed the allowlist (remote: after checked redirects)."""
        info = super()._get_asset_info(asset)
        info["url"] = self.sr_config.allowlist.check_existing(info["url"])
        return info
