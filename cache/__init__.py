"""The tile cache: tiers, the HTTP cache middleware and its hit fast path, pre-warm, purge.

It imports ``sr_engine`` only (never ``tileserver``); what the server wires in is below.
"""

from __future__ import annotations

from cache.asgi import TileCache, TileCacheMiddleware
from cache.fast_path import HitFastPath, Replica, cors_replica
from cache.recompute import BACKGROUND_RECOMPUTE
from cache.singleflight import SingleFlight
from cache.tiered import build_tiered_cache

__all__ = [
    "BACKGROUND_RECOMPUTE",
    "HitFastPath",
    "Replica",
    "SingleFlight",
    "TileCache",
    "TileCacheMiddleware",
    "build_tiered_cache",
    "cors_replica",
]
