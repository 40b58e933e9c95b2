"""Dataset profiles: the per-band value range that normalizes a source for the upscaler, and
its kind (classes are never super-resolved), cached per application."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import TTLCache
from rasterio.enums import Resampling
from rio_tiler.io import Reader

CATEGORICAL_MAX_CLASSES = 32
"""A 1-band integer raster with at most this many distinct values is treated as classes."""


@dataclass(frozen=True)
class DatasetProfile:
    """Dataset-level facts: per-band value range for normalization, and its kind."""

    band_min: np.ndarray
    band_max: np.ndarray
    categorical: bool
    continuous_single_band: bool


def compute_profile(reader: Reader) -> DatasetProfile:
    """The profile of the reader's dataset, from band tags (uint8: 0-255) or a decimated read."""
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


class ProfileCache:
    """The application's profiles, keyed by path and file identity (local: mtime and size;
    remote: the object's version, so a replaced object gets a new profile). Entries expire
    after ``ttl_s`` and the least recently used go first past ``max_entries``."""

    def __init__(self, max_entries: int = 256, ttl_s: float = 3600.0) -> None:
        self._profiles: TTLCache[tuple, DatasetProfile] = TTLCache(max_entries, ttl_s)
        self._lock = threading.Lock()

    def get(self, reader: Reader, remote_version: Any) -> DatasetProfile:
        """The reader's profile, computed on a miss; ``remote_version(path)`` names a remote
        object's version."""
        path = str(reader.input)
        try:
            stat = os.stat(path)
            key: tuple = (path, stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (path, remote_version(path))
        with self._lock:
            profile = self._profiles.get(key)
        if profile is None:
            profile = compute_profile(reader)
            with self._lock:
                self._profiles[key] = profile
        return profile

    def __len__(self) -> int:
        with self._lock:
            return len(self._profiles)
