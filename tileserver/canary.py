"""Canary routing: which served model (champion or canary) a tile request uses.

A tile's block is its ancestor ``block_zoom_offset`` zooms up (z-4 by default: 16 x 16
tiles, by halving x and y; exact for quadtree TMS, a stable grouping for the others). A
block is the canary's when a hash of (TMS, block) falls below ``fraction``: the same on
every replica and after every restart, one model per block (no checkerboard of seams), and
raising the fraction only adds blocks. ``ModelRouteMiddleware`` decides before the tile
cache computes its key (the key carries the chosen model's version) and puts the role in
``MODEL_ROLE`` for the request.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from cache.keys import TILE_PATH

CHAMPION = "champion"
CANARY = "canary"
SHADOW = "shadow"

MODEL_ROLE: ContextVar[str] = ContextVar("hndsr_model_role", default=CHAMPION)
"""The served model of the current request (``champion`` unless the canary split says so)."""

_HASH_SPAN = float(2**64)


@dataclass(frozen=True)
class CanarySplit:
    """Stable assignment of map blocks to the canary."""

    fraction: float
    block_zoom_offset: int = 4

    def block(self, tms: str, z: int, x: int, y: int) -> tuple[str, int, int, int]:
        """(TMS, zoom, x, y) of the tile's block."""
        shift = min(self.block_zoom_offset, z)
        return tms, z - shift, x >> shift, y >> shift

    def block_share(self, tms: str, z: int, x: int, y: int) -> float:
        """The block's position in [0, 1): the canary serves it below ``fraction``."""
        digest = hashlib.blake2b(
            "/".join(map(str, self.block(tms, z, x, y))).encode(), digest_size=8
        )
        return int.from_bytes(digest.digest(), "big") / _HASH_SPAN

    def role(self, tms: str, z: int, x: int, y: int) -> str:
        """``canary`` or ``champion`` for one tile."""
        return CANARY if self.block_share(tms, z, x, y) < self.fraction else CHAMPION


class ModelRouteMiddleware:
    """Sets ``MODEL_ROLE`` for tile requests; outside the tile cache (hits included)."""

    def __init__(self, app: ASGIApp, split: CanarySplit) -> None:
        self.app = app
        self.split = split

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = TILE_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        role = self.split.role(match["tms"], int(match["z"]), int(match["x"]), int(match["y"]))
        token = MODEL_ROLE.set(role)
        try:
            await self.app(scope, receive, send)
        finally:
            MODEL_ROLE.reset(token)
