"""Prometheus metrics of the tile cache (names are part of the contract in DESIGN.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TILE_CACHE = Counter("hndsr_tile_cache", "Tile cache lookups.", ["tier", "result"])
CACHE_TIER_UP = Gauge(
    "hndsr_cache_tier_up", "1 when a cache tier is usable.", ["tier"], multiprocess_mode="liveall"
)
HTTP_COALESCED = Counter(
    "hndsr_http_coalesced",
    "Tile requests that waited on an identical request's response (the cache's singleflight).",
)
