"""Prometheus metrics of the tile cache tiers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TILE_CACHE = Counter("hndsr_tile_cache", "Tile cache lookups.", ["tier", "result"])
CACHE_TIER_UP = Gauge(
    "hndsr_cache_tier_up", "1 when a cache tier is usable.", ["tier"], multiprocess_mode="liveall"
)
