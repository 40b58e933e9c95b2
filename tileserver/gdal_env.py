"""GDAL configuration of the server process: security and performance settings."""

from __future__ import annotations

import os

SECURITY = {
    # inline <GDAL_WMS> and WMTS connection strings make the server fetch arbitrary URLs;
    # VRT cannot be skipped (rio-tiler's warped reads use it): the allowlist refuses .vrt.
    "GDAL_SKIP": "WMS,WMTS",
}
PERFORMANCE = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "5000000",
    "GDAL_CACHEMAX": "200",
    "CPL_VSIL_CURL_CACHE_SIZE": "200000000",
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
}


def configure_gdal() -> None:
    """Set the GDAL options in the environment (before GDAL registers its drivers).

    Security options are forced; performance options keep any value already set.
    """
    skip = {d for d in os.environ.get("GDAL_SKIP", "").replace(",", " ").split() if d}
    os.environ["GDAL_SKIP"] = ",".join(sorted(skip | set(SECURITY["GDAL_SKIP"].split(","))))
    for key, value in PERFORMANCE.items():
        os.environ.setdefault(key, value)
