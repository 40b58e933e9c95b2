"""Dataset-level percentile stretch, COG writing (rio-cogeo) and COG validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from cogs.errors import SampleDataError

NODATA = 0  # zero is "no data" in both COGs; valid pixels are never 0 (uint8: 1..255)
COG_BLOCKSIZE = 512


@dataclass(frozen=True)
class Stretch:
    """Per-band linear stretch from uint16 DN to uint8 1..255 (0 stays nodata)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    percentiles: tuple[float, float]

    def apply(self, stack: np.ndarray) -> np.ndarray:
        """Map a (C, H, W) uint16 stack to uint8; pixels that are nodata in any band become 0."""
        valid = valid_mask(stack)
        low = np.asarray(self.low, dtype=np.float64)[:, None, None]
        high = np.asarray(self.high, dtype=np.float64)[:, None, None]
        scaled = 1.0 + (stack.astype(np.float64) - low) / (high - low) * 254.0
        out = np.clip(np.rint(scaled), 1, 255).astype(np.uint8)
        out[:, ~valid] = NODATA
        return out


def valid_mask(stack: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose every band differs from nodata."""
    return np.all(stack != NODATA, axis=0)


def percentile_stretch(stack: np.ndarray, percentiles: tuple[float, float] = (2, 98)) -> Stretch:
    """The stretch whose bounds are per-band percentiles over all valid pixels of the scene."""
    valid = valid_mask(stack)
    if not valid.any():
        raise SampleDataError("the scene has no valid pixels")
    bounds = [np.percentile(band[valid], percentiles) for band in stack]
    low = tuple(float(lo) for lo, _ in bounds)
    high = tuple(float(max(hi, lo + 1)) for lo, hi in bounds)
    return Stretch(low=low, high=high, percentiles=percentiles)


def write_cog(
    stack: np.ndarray,
    profile: dict,
    dst: Path,
    *,
    colorinterp: tuple[ColorInterp, ...],
    band_tags: list[dict[str, str]] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a (C, H, W) stack on the grid of ``profile`` as a validated COG at ``dst``.

    Deflate with a horizontal predictor, 512-px blocks, pixel interleave, nodata 0,
    overviews averaged (nodata excluded) down to one block.
    """
    count, height, width = stack.shape
    src_profile = {
        "driver": "GTiff",
        "dtype": stack.dtype.name,
        "count": count,
        "height": height,
        "width": width,
        "crs": profile["crs"],
        "transform": profile["transform"],
        "nodata": NODATA,
    }
    dst_profile = {**cog_profiles.get("deflate"), "predictor": 2}
    dst_profile.update(blockxsize=COG_BLOCKSIZE, blockysize=COG_BLOCKSIZE)
    with MemoryFile() as memfile:
        with memfile.open(**src_profile) as mem:
            mem.write(stack)
            mem.colorinterp = colorinterp
            mem.update_tags(**(tags or {}))
            for index, band in enumerate(band_tags or [], start=1):
                mem.update_tags(index, **band)
        with memfile.open() as src:
            cog_translate(
                src,
                dst,
                dst_profile,
                nodata=NODATA,
                overview_resampling="average",
                forward_band_tags=True,
                in_memory=True,
                quiet=True,
            )
    check_cog(dst)


def check_cog(path: Path) -> None:
    """Raise SampleDataError unless ``path`` is a valid COG (warnings allowed)."""
    is_valid, errors, _warnings = cog_validate(path, quiet=True)
    if not is_valid:
        raise SampleDataError(f"{path.name} is not a valid COG: {'; '.join(errors)}")
