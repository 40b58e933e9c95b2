"""GDAL configuration of the server process: security, performance and remote-read settings."""

from __future__ import annotations

import os

SECURITY = {
    # inline <GDAL_WMS> and WMTS connection strings make the server fetch arbitrary URLs;
    # VRT cannot be skipped (rio-tiler's warped reads use it): the allowlist refuses .vrt.
    "GDAL_SKIP": "WMS,WMTS",
}
PERFORMANCE = {
    # TiTiler's documented settings for cloud-optimized reads over HTTP
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


def remote_options(
    timeout_s: float, connect_timeout_s: float, max_retry: int, retry_delay_s: float
) -> dict[str, str]:
    """GDAL's HTTP timeout and retry options from the server's settings."""
    return {
        "GDAL_HTTP_TIMEOUT": f"{timeout_s:g}",
        "GDAL_HTTP_CONNECTTIMEOUT": f"{connect_timeout_s:g}",
        "GDAL_HTTP_MAX_RETRY": str(max_retry),
        "GDAL_HTTP_RETRY_DELAY": f"{retry_delay_s:g}",
    }


def configure_gdal(remote: dict[str, str] | None = None) -> None:
    """Set the GDAL options in the environment (before GDAL registers its drivers).

    Security options and ``remote`` (``remote_options``: the settings' timeouts) are forced;
    performance options keep any value already set.
    """
    skip = {d for d in os.environ.get("GDAL_SKIP", "").replace(",", " ").split() if d}
    os.environ["GDAL_SKIP"] = ",".join(sorted(skip | set(SECURITY["GDAL_SKIP"].split(","))))
    for key, value in PERFORMANCE.items():
        os.environ.setdefault(key, value)
    os.environ.update(remote or {})
