"""Tile cache keys, exactly as DESIGN.md defines them.

A key covers: the endpoint, the normalized dataset URL plus its identity (size and mtime, or
the remote object's ETag/Last-Modified; looked up at most once per ``ttl`` seconds so that
hits do not stat), the
TMS, z/x/y, tile size, format, every render parameter (allowlisted, sorted by name; foreign
ones such as WMTS ``service``/``version`` dropped), the SR mode, the model version and
``RENDER_VERSION``. The readable prefix lets ``cache purge`` select by model, dataset and zoom.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sr_engine.modes import AUTO

RENDER_VERSION = "1"
"""Bumped only when the same inputs render to different bytes."""

KEY_PREFIX = "hndsr:tile:"

TILE_PARAMS = frozenset(
    {
        "bidx",
        "expression",
        "assets",
        "asset_as_band",
        "nodata",
        "unscale",
        "resampling",
        "reproject",
        "rescale",
        "color_formula",
        "colormap",
        "colormap_name",
        "return_mask",
        "algorithm",
        "algorithm_params",
        "buffer",
        "padding",
    }
)
"""Query parameters of TiTiler's tile endpoint that change the bytes (besides url, tilesize,
sr and format, which the key holds in their own fields)."""

DEFAULT_TILESIZE = "256"
DEFAULT_SR = AUTO

TILE_PATH = re.compile(
    r"^/(?P<endpoint>cog|stac|mosaicjson)/tiles/(?P<tms>[A-Za-z0-9_.-]+)/(?P<z>\d{1,2})/(?P<x>\d{1,9})/"
    r"(?P<y>\d{1,9})(?:\.(?P<fmt>[A-Za-z0-9]+))?$"
)


@dataclass(frozen=True, slots=True)
class TileRequest:
    """The parts of a tile request that the key depends on."""

    endpoint: str
    tms: str
    z: int
    x: int
    y: int
    fmt: str
    url: str
    tilesize: str
    sr: str
    params: tuple[tuple[str, tuple[str, ...]], ...]


def parse_tile_request(path: str, query: str) -> TileRequest | None:
    """A ``TileRequest`` for a tile path with a ``url``; None for anything else."""
    match = TILE_PATH.match(path)
    if match is None:
        return None
    values: dict[str, list[str]] = {}
    url = ""
    fmt = match["fmt"] or ""
    if fmt != fmt.lower():
        return None  # TiTiler answers 422 for ``.PNG``: so must a cached tile (no hit here)
    tilesize = DEFAULT_TILESIZE
    sr = DEFAULT_SR
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "url":
            url = value.strip()
        elif name == "tilesize":
            tilesize = value.strip()
        elif name == "sr":
            sr = value.strip().lower()
        elif name == "format" and not match["fmt"]:  # the route without an extension
            fmt = value.strip().lower()
        elif name in TILE_PARAMS:
            values.setdefault(name, []).append(value.strip())
    if not url:
        return None
    return TileRequest(
        endpoint=match["endpoint"],
        tms=match["tms"],
        z=int(match["z"]),
        x=int(match["x"]),
        y=int(match["y"]),
        fmt=fmt,
        url=url,
        tilesize=tilesize,
        sr=sr,
        params=tuple((name, tuple(values[name])) for name in sorted(values)),
    )


def normalize_url(url: str) -> str:
    """Canonical form of a dataset URL: resolved local path, or lower-cased scheme and host."""
    if url.startswith("file://"):
        url = url[len("file://") :]
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        port = parts.port
        if port and port != {"http": 80, "https": 443}[parts.scheme]:
            host = f"{host}:{port}"
        return urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))
    if "://" in url:
        return url
    return os.path.realpath(url)


def dataset_hash(normalized_url: str) -> str:
    """Short stable hash of a normalized dataset URL (the key's dataset field)."""
    return hashlib.blake2b(normalized_url.encode(), digest_size=8).hexdigest()


RemoteIdentity = Callable[[str], tuple[str, str]]
"""``url -> (normalized url, version)`` of a remote source (blocking; run in a thread)."""


def is_remote(url: str) -> bool:
    """True for URLs other than ``file://`` and for GDAL ``/vsi*`` spellings."""
    lower = url.lower()
    return ("://" in lower and not lower.startswith("file://")) or lower.startswith("/vsi")


class DatasetIdentity:
    """Normalized URL and version of a dataset, remembered for ``ttl`` seconds.

    Local files: size and mtime (ns); remote sources: what ``remote`` answers (the server's
    lookup: ETag, else Last-Modified and length; ``unavailable`` when the lookup fails);
    without ``remote``, the URL only. Only call it for URLs that passed the allowlist.
    """

    def __init__(
        self, ttl: float = 2.0, max_entries: int = 10_000, remote: RemoteIdentity | None = None
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.remote = remote
        self._known: dict[str, tuple[float, str, str]] = {}

    async def __call__(self, url: str) -> tuple[str, str]:
        """``(normalized url, version)`` of ``url``."""
        now = time.monotonic()
        known = self._known.get(url)
        if known is not None and known[0] > now:
            return known[1], known[2]
        if is_remote(url):
            normalized, version = normalize_url(url), ""
            if self.remote is not None:
                try:
                    normalized, version = await asyncio.to_thread(self.remote, url)
                except Exception:  # the app answers the request (404/502/504): not cached
                    version = "unavailable"
        else:
            normalized = await asyncio.to_thread(normalize_url, url)
            try:
                stat = os.stat(normalized)
                version = f"size={stat.st_size};mtime={stat.st_mtime_ns}"
            except OSError:
                version = "missing"
        if len(self._known) >= self.max_entries:
            self._known.clear()
        self._known[url] = (now + self.ttl, normalized, version)
        return normalized, version


def model_field(model_version: str) -> str:
    """The model version as the key's readable model field (no ``:``, the field separator)."""
    return model_version.replace(":", "_") or "none"


def tile_cache_key(
    request: TileRequest, normalized_url: str, version: str, model_version: str
) -> str:
    """The cache key: readable prefix (render version, model, dataset, z/x/y) + digest."""
    digest_input = "\x1f".join(
        (
            request.endpoint,
            normalized_url,
            version,
            request.tms,
            request.tilesize,
            request.fmt,
            request.sr,
            repr(request.params),
            model_version,
            RENDER_VERSION,
        )
    )
    digest = hashlib.blake2b(digest_input.encode(), digest_size=16).hexdigest()
    return (
        f"{KEY_PREFIX}r{RENDER_VERSION}:{model_field(model_version)}:{dataset_hash(normalized_url)}:"
        f"{request.z}:{request.x}:{request.y}:{digest}"
    )


@dataclass(frozen=True, slots=True)
class KeyParts:
    """The readable fields of a cache key."""

    render_version: str
    model_version: str
    dataset: str
    z: int
    x: int
    y: int


def parse_key(key: str) -> KeyParts | None:
    """Split a key made by ``tile_cache_key``; None for anything else."""
    if not key.startswith(KEY_PREFIX):
        return None
    fields = key[len(KEY_PREFIX) :].split(":")
    if len(fields) != 7 or not fields[0].startswith("r"):
        return None
    try:
        z, x, y = int(fields[3]), int(fields[4]), int(fields[5])
    except ValueError:
        return None
    return KeyParts(fields[0][1:], fields[1], fields[2], z, x, y)
