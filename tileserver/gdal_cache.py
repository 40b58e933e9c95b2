"""Forget what GDAL's ``/vsicurl/`` layer cached about a remote object (its size and blocks),
so that an object replaced under the same URL is read anew.

GDAL keeps both per process, keyed by the path, for as long as the process lives;
rasterio does not expose ``VSICurlPartialClearCache``, so it is called through ctypes on
the libgdal that rasterio loaded (found in the process's memory map).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import rasterio  # noqa: F401  (loads libgdal)

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _clear_function() -> Callable[[bytes], None] | None:
    maps = Path("/proc/self/maps")
    paths = {
        line.split()[-1]
        for line in (maps.read_text().splitlines() if maps.exists() else [])
        if "libgdal" in line.rsplit("/", 1)[-1]
    }
    for path in sorted(paths):
        try:
            function = ctypes.CDLL(path).VSICurlPartialClearCache
        except (OSError, AttributeError):
            continue
        function.argtypes = [ctypes.c_char_p]
        function.restype = None
        return function  # type: ignore[no-any-return]
    log.warning("libgdal not found: replaced remote objects may be read from GDAL's cache")
    return None


def forget_remote(gdal_path: str) -> bool:
    """Drop GDAL's cached size and blocks of ``gdal_path`` (``/vsicurl/...``, ``/vsis3/...``);
    False where the function could not be found."""
    function = _clear_function()
    if function is None:
        return False
    function(gdal_path.encode())
    return True
