"""SR-aware rio-tiler readers: advertise deeper zooms and super-resolve tiles past native.

``SRReader.tile`` computes the tile's own scale ``s = native resolution / tile resolution``
in the TMS CRS. At ``s <= sr_min_scale`` (or ``sr=off``) it returns rio-tiler's own tile.
Above, it reads a window of the dataset's global LR grid (native pixel size, anchored at
the TMS origin, halo included) with a 1e-6 warp tolerance, normalizes it with
dataset-level statistics, fills masked pixels with their nearest valid neighbour and hands
it to ``SRBackend.upscale_tile``, which samples at the tile's own pixel centres. Deeper than
``sr_max_scale`` the tile is super-resolved at the maximum scale on that scale's global grid
and finished with bicubic at exact coordinates.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import attr
import numpy as np
import pystac
from rasterio.enums import Resampling
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.expression import parse_expression
from rio_tiler.io import Reader, STACReader
from rio_tiler.models import ImageData
from rio_tiler.types import AssetInfo, AssetType
from scipy import ndimage

from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import regular_field
from tileserver.limits import ReadLimits, clipped_part, dataset_window, output_size
from tileserver.security import Allowlist
from tileserver.sr_backend import SRBackend
from tileserver.sr_report import SRReport, ZoomInfo, current_report
from tileserver.tile_geometry import (
    Frame,
    Grid,
    SamplingPlan,
    native_resolution,
    plan_sampling,
    sr_zoom_range,
    tile_frame,
    tms_origin,
    window_frame,
)

LR_WARP_OPTIONS = {"tolerance": 1e-6, "XSCALE": 1, "YSCALE": 1}
"""WarpedVRT options of LR reads. The default tolerance (0.125 px) lets overlapping reads pick
different source pixels; GDAL also derives the kernel's scale per chunk from the chunk's
source window, so windows at different positions disagree by a few DN unless the scale is
fixed (the LR grid has about the source's pixel count: one destination pixel per source pixel)."""
CATEGORICAL_MAX_CLASSES = 32
"""A 1-band integer raster with at most this many distinct values is treated as classes."""


@dataclass(frozen=True)
class SRConfig:
    """What the readers need from the application: scales, upscaler backend, allowlist."""

    min_scale: float
    max_scale: float
    backend: SRBackend
    allowlist: Allowlist
    read_limits: ReadLimits = field(default_factory=ReadLimits)


@dataclass(frozen=True)
class DatasetProfile:
    """Dataset-level facts: per-band value range for normalization, and its kind."""

    band_min: np.ndarray
    band_max: np.ndarray
    categorical: bool
    continuous_single_band: bool


_profiles: OrderedDict[tuple, DatasetProfile] = OrderedDict()
_profiles_lock = threading.Lock()
_PROFILE_CACHE_SIZE = 256


def _profile_key(reader: Reader) -> tuple:
    path = str(reader.input)
    try:
        stat = os.stat(path)
        return (path, stat.st_mtime_ns, stat.st_size)
    except OSError:  # remote: its ETag (a replaced object gets a new profile)
        config = getattr(reader, "sr_config", None)
        return (path, config.allowlist.remote_version(path) if config else "")


def dataset_profile(reader: Reader) -> DatasetProfile:
    """The (cached) profile of the reader's dataset, from band tags or a decimated read."""
    key = _profile_key(reader)
    with _profiles_lock:
        if key in _profiles:
            _profiles.move_to_end(key)
            return _profiles[key]
    profile = _compute_profile(reader)
    with _profiles_lock:
        _profiles[key] = profile
        while len(_profiles) > _PROFILE_CACHE_SIZE:
            _profiles.popitem(last=False)
    return profile


def _compute_profile(reader: Reader) -> DatasetProfile:
    dataset: Any = reader.dataset
    dtype = np.dtype(dataset.dtypes[0])
    count = dataset.count
    factor = max(1.0, max(dataset.width, dataset.height) / 512)
    shape = (count, max(1, int(dataset.height / factor)), max(1, int(dataset.width / factor)))
    sample = dataset.read(out_shape=shape, resampling=Resampling.nearest, masked=True)
    valid = sample.compressed() if count == 1 else None
    if dtype == np.uint8:
        lo, hi = np.zeros(count), np.full(count, 255.0)
    else:
        tags = [dataset.tags(i) for i in range(1, count + 1)]
        if all("STATISTICS_MINIMUM" in t and "STATISTICS_MAXIMUM" in t for t in tags):
            lo = np.array([float(t["STATISTICS_MINIMUM"]) for t in tags])
            hi = np.array([float(t["STATISTICS_MAXIMUM"]) for t in tags])
        else:
            flat = sample.reshape(count, -1)
            lo = np.array([float(b.min()) if b.count() else 0.0 for b in flat])
            hi = np.array([float(b.max()) if b.count() else 1.0 for b in flat])
    hi = np.where(hi > lo, hi, lo + 1.0)
    integer = np.issubdtype(dtype, np.integer)
    few_values = valid is not None and len(np.unique(valid)) <= CATEGORICAL_MAX_CLASSES
    return DatasetProfile(
        band_min=lo,
        band_max=hi,
        categorical=bool(reader.colormap) or (count == 1 and integer and few_values),
        continuous_single_band=count == 1 and not integer,
    )


def _fill_masked(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by their nearest valid neighbour (so nodata never bleeds in)."""
    if valid.all():
        return values
    rows, cols = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return values[:, rows, cols]


def _plan_field(plan: SamplingPlan) -> np.ndarray:
    """The coordinate field (H, W, 2) of a plan's regular sampling."""
    return regular_field(np.asarray([plan.origin]), plan.scale, plan.out_shape)[0]


def _sample_mask(valid: np.ndarray, plan: SamplingPlan) -> np.ndarray:
    """The LR validity mask sampled (nearest) at the output pixel centres."""
    field = _plan_field(plan)
    cols = np.clip(np.floor(field[..., 0]).astype(int), 0, valid.shape[1] - 1)
    rows = np.clip(np.floor(field[..., 1]).astype(int), 0, valid.shape[0] - 1)
    return valid[rows, cols]


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

    sr_mode: str = attr.ib(default="auto", kw_only=True)
    advertised_tilesize: int = attr.ib(default=256, kw_only=True)
    sr_config: SRConfig | None = attr.ib(default=None, kw_only=True)
    sr_report: SRReport | None = attr.ib(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        """Open the dataset, then compute its native grid and SR zoom range in the TMS."""
        super().__attrs_post_init__()
        if self.sr_config is None:
            raise ValueError("SRReader needs an sr_config")
        self.report = self.sr_report or current_report()
        self.native_res = native_resolution(self)
        x0, y0 = tms_origin(self.tms)
        self.grid = Grid(x0, y0, *self.native_res)
        self.zoom_info = _zoom_info(
            self.tms, self.native_res, super().maxzoom, self.advertised_tilesize, self.sr_config
        )
        self.report.zooms[str(self.tms.id)] = self.zoom_info

    @cached_property
    def profile(self) -> DatasetProfile:
        """The dataset's profile, looked up once per reader (the cache key stats the file)."""
        return dataset_profile(self)

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
        assert self.sr_config is not None
        if not self.tile_exists(tile_x, tile_y, tile_z):
            raise TileOutsideBounds(f"Tile {tile_z}/{tile_x}/{tile_y} is outside bounds")
        size = tilesize or self.tms.matrix(tile_z).tileWidth
        frame = tile_frame(self.tms, tile_x, tile_y, tile_z, size)
        if buffer:
            pad = int(math.ceil(buffer))
            frame = Frame(
                frame.left - pad * frame.res_x,
                frame.top + pad * frame.res_y,
                frame.res_x,
                frame.res_y,
                size + 2 * pad,
                size + 2 * pad,
            )
        scale = (self.grid.res_x / frame.res_x, self.grid.res_y / frame.res_y)
        report = self.report
        if not self._should_super_resolve(scale):
            report.record("off", scale, "none")
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
        assert self.sr_config is not None
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
        assert self.sr_config is not None
        dataset: Any = self.dataset
        window = (float(dataset.width), float(dataset.height))
        width, height, max_size = kwargs.get("width"), kwargs.get("height"), kwargs.get("max_size")
        out = output_size(dataset, None, None, window, width, height, max_size)
        self.sr_config.read_limits.check_output(*out)
        self.sr_config.read_limits.check_source(dataset, window, out)
        return super().read(*args, **kwargs)

    def _should_super_resolve(self, scale: tuple[float, float]) -> bool:
        assert self.sr_config is not None
        if self.sr_mode == "off" or max(scale) <= self.sr_config.min_scale:
            return False
        if self.profile.categorical:
            return False
        return not (self.sr_mode == "auto" and self.profile.continuous_single_band)

    def _super_resolve(
        self,
        frame: Frame,
        scale: tuple[float, float],
        indexes: Any,
        read_options: dict[str, Any],
    ) -> tuple[ImageData, str, str]:
        """Super-resolve ``frame``, whose scale on the LR grid is ``scale``."""
        assert self.sr_config is not None
        backend = self.sr_config.backend
        resolved = backend.resolve(self.sr_mode)
        max_scale = self.sr_config.max_scale
        if max(scale) <= max_scale:
            plan = plan_sampling(self.grid, frame, resolved.halo)
            data, valid, meta = self._read_lr(plan, indexes, read_options)
            hr, mode, model = backend.upscale_tile(
                data, _plan_field(plan), plan.pixel_offset, resolved.mode
            )
            out_valid = _sample_mask(valid, plan)
        else:
            # SR at the maximum scale on its own global grid, then exact-coordinate bicubic.
            mid_grid = Grid(
                self.grid.x0,
                self.grid.y0,
                self.grid.res_x / min(max_scale, scale[0]),
                self.grid.res_y / min(max_scale, scale[1]),
            )
            finish = plan_sampling(mid_grid, frame, BicubicUpscaler.halo)
            plan = plan_sampling(self.grid, window_frame(mid_grid, finish), resolved.halo)
            data, valid, meta = self._read_lr(plan, indexes, read_options)
            mid, mode, model = backend.upscale_tile(
                data, _plan_field(plan), plan.pixel_offset, resolved.mode
            )
            mid_valid = _sample_mask(valid, plan)
            hr = backend.bicubic_tile(mid, _plan_field(finish))
            out_valid = _sample_mask(mid_valid, finish)
        return self._to_image(hr, out_valid, frame, meta), mode, model

    def _read_lr(
        self, plan: SamplingPlan, indexes: Any, read_options: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, ImageData]:
        """Read the plan's LR window, normalized to [0, 1] with masked pixels filled."""
        lr_frame = window_frame(self.grid, plan)
        options = {
            k: v for k, v in read_options.items() if k not in ("resampling_method", "padding")
        }
        options["reproject_method"] = "cubic"
        img = self.part(
            lr_frame.bounds,
            dst_crs=self.tms.rasterio_crs,
            bounds_crs=self.tms.rasterio_crs,
            width=lr_frame.width,
            height=lr_frame.height,
            max_size=None,
            indexes=indexes,
            resampling_method="bilinear",
            vrt_options=LR_WARP_OPTIONS,
            **options,
        )
        if img.array.shape[1:] != plan.window_shape or not np.allclose(
            np.asarray(img.bounds), lr_frame.bounds, rtol=0, atol=1e-6 * lr_frame.res_x
        ):
            raise RuntimeError("the LR read did not return the requested grid window")
        lo, hi = self._band_range(img.band_names)
        valid = img.mask > 0
        values = ((img.array.data.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        values = np.clip(_fill_masked(values, valid), 0.0, 1.0)
        return values, valid, img

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


def _zoom_info(tms, native_res, native_zoom: int, tilesize: int, config: SRConfig) -> ZoomInfo:
    first_sr, deepest = sr_zoom_range(tms, native_res, tilesize, config.min_scale, config.max_scale)
    return ZoomInfo(
        native_zoom=native_zoom,
        sr_from_zoom=first_sr,
        maxzoom=max(native_zoom, deepest),
        tilesize=tilesize,
    )


@attr.s
class SRSTACReader(STACReader):
    """``STACReader`` whose item fetch and asset hrefs go through the allowlist, reading
    assets with ``SRReader`` and advertising its SR zooms."""

    reader: type[Reader] = attr.ib(default=SRReader)
    sr_mode: str = attr.ib(default="auto", kw_only=True)
    advertised_tilesize: int = attr.ib(default=256, kw_only=True)
    sr_config: SRConfig | None = attr.ib(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        """Fetch the item through the allowlist, then raise maxzoom to the SR zoom range."""
        if self.sr_config is None:
            raise ValueError("SRSTACReader needs an sr_config")
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
        if user_maxzoom is None and self.maxzoom is not None and self.transform is not None:
            info = _zoom_info(
                self.tms,
                native_resolution(self),
                self.maxzoom,
                self.advertised_tilesize,
                self.sr_config,
            )
            current_report().zooms[str(self.tms.id)] = info
            self.maxzoom = info.maxzoom

    def _get_asset_info(self, asset: AssetType) -> AssetInfo:
        """Asset info whose URL passed the allowlist (remote: after checked redirects)."""
        assert self.sr_config is not None
        info = super()._get_asset_info(asset)
        info["url"] = self.sr_config.allowlist.check_existing(info["url"])
        return info
