"""Fine and coarse COGs of a real scene: the RGB bands with their mask, and versions made
``s`` times coarser by area averaging or by a Gaussian PSF then area averaging.

A coarse pixel averages the ``s x s`` fine pixels it covers (the fine grid is cropped to a
multiple of ``s``), is valid only where all of them are, and sits on the fine transform
scaled by exactly ``s``. The PSF blur is a normalized convolution over valid pixels, so
nodata never leaks into the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from scipy import ndimage

DEGRADATIONS = ("area", "psf")


@dataclass
class Raster:
    """RGB bands ``(3, H, W)``, validity ``(H, W)`` and the grid and mask kind to write them."""

    rgb: np.ndarray
    valid: np.ndarray
    crs: CRS
    transform: Affine
    nodata: float | None
    has_mask: bool

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.valid.shape[0], self.valid.shape[1]


def read_scene(path: Path) -> Raster:
    """The first three bands of an 8-bit scene and its validity (nodata, alpha or mask)."""
    with rasterio.open(path) as src:
        if src.count < 3 or src.dtypes[0] != "uint8":
            raise ValueError(f"{path}: the tile-path evaluation needs 8-bit RGB(A/N) bands")
        valid = src.dataset_mask() > 0
        flags = src.mask_flag_enums[0]
        has_mask = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
        return Raster(src.read((1, 2, 3)), valid, src.crs, src.transform, src.nodata, has_mask)


def degrade(raster: Raster, kind: str, scale: int, psf_sigma: float) -> Raster:
    """``raster`` made ``scale`` times coarser: ``area`` averaging, or ``psf`` (a Gaussian of
    sigma ``psf_sigma * scale`` fine pixels) then area averaging."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r} (expected one of {DEGRADATIONS})")
    values = raster.rgb.astype(np.float64)
    if kind == "psf":
        values = _blur_valid(values, raster.valid, psf_sigma * scale)
    h, w = raster.shape[0] // scale, raster.shape[1] // scale
    values = values[:, : h * scale, : w * scale].reshape(3, h, scale, w, scale).mean((2, 4))
    valid = raster.valid[: h * scale, : w * scale].reshape(h, scale, w, scale).all(axis=(1, 3))
    info = np.iinfo(raster.rgb.dtype)
    rgb = np.clip(np.rint(values), info.min, info.max).astype(raster.rgb.dtype)
    transform = raster.transform * Affine.scale(scale)
    return Raster(rgb, np.asarray(valid), raster.crs, transform, raster.nodata, raster.has_mask)


def _blur_valid(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="nearest")
    blurred = np.stack(
        [ndimage.gaussian_filter(band * valid, sigma, mode="nearest") for band in values]
    )
    return np.where(valid, blurred / np.maximum(weight, 1e-12), values)


def write_cog(raster: Raster, dst: Path) -> None:
    """Write ``raster`` as a validated COG (deflate), keeping its nodata value or mask."""
    rgb = raster.rgb.copy()
    if raster.nodata is not None:
        rgb[:, ~raster.valid] = raster.nodata
    profile = {
        "driver": "GTiff",
        "dtype": rgb.dtype.name,
        "count": 3,
        "height": raster.shape[0],
        "width": raster.shape[1],
        "crs": raster.crs,
        "transform": raster.transform,
        "nodata": raster.nodata,
    }
    with_mask = raster.nodata is None and (raster.has_mask or not raster.valid.all())
    with MemoryFile() as memfile:
        with memfile.open(**profile) as mem:
            mem.write(rgb)
            if with_mask:
                mem.write_mask(raster.valid.astype(np.uint8) * 255)
        with memfile.open() as src:
            cog_translate(
                src,
                dst,
                cog_profiles.get("deflate"),
                nodata=raster.nodata,
                add_mask=with_mask,
                overview_resampling="average",
                in_memory=True,
                quiet=True,
            )
    is_valid, errors, _ = cog_validate(dst, quiet=True)
    if not is_valid:
        raise RuntimeError(f"{dst} is not a valid COG: {'; '.join(errors)}")
