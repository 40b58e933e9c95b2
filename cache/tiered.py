"""Tiers composed into one cache: read-through with promotion, write-through."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cache.entry import Entry
from cache.redis_tier import DEFAULT_TTL_S, RedisTier
from cache.tiers import CacheTier, DiskTier, MemoryTier


class TieredCache:
    """Fastest tier first; a hit in a slower tier is copied into every faster one."""

    def __init__(self, tiers: Sequence[CacheTier]) -> None:
        self.tiers = list(tiers)
        self.memory = next((t for t in self.tiers if isinstance(t, MemoryTier)), None)
        self.redis = next((t for t in self.tiers if isinstance(t, RedisTier)), None)

    async def get(self, key: str) -> tuple[Entry, str] | None:
        """``(entry, tier name)`` of the first tier holding the key, promoting it; or None."""
        for tier in self.tiers:
            entry = await tier.get(key)
            if entry is not None:
                await self.set(key, entry, found_in=tier)
                return entry, tier.name
        return None

    async def set(self, key: str, entry: Entry, found_in: CacheTier | None = None) -> None:
        """Write the entry to every tier, or only to those faster than ``found_in``, the tier
        it was read from."""
        end = self.tiers.index(found_in) if found_in in self.tiers else len(self.tiers)
        for tier in self.tiers[:end]:
            await tier.set(key, entry)

    async def delete(self, key: str) -> None:
        """Drop the key from every tier."""
        for tier in self.tiers:
            await tier.delete(key)

    async def close(self) -> None:
        """Release connections and files."""
        for tier in self.tiers:
            if isinstance(tier, RedisTier):
                await tier.close()
            elif isinstance(tier, DiskTier):
                tier.close()


def build_tiered_cache(
    cache_dir: Path,
    cache_size_mb: int,
    memory_mb: int,
    redis_url: str | None,
    redis_ttl_s: int = DEFAULT_TTL_S,
    redis_socket_timeout: float = 0.25,
) -> TieredCache:
    """Memory (if ``memory_mb``) -> disk -> Redis (if ``redis_url``)."""
    tiers: list[CacheTier] = []
    if memory_mb > 0:
        tiers.append(MemoryTier(memory_mb * 2**20))
    tiers.append(DiskTier(cache_dir, cache_size_mb))
    if redis_url:
        tiers.append(RedisTier(redis_url, redis_ttl_s, redis_socket_timeout))
    return TieredCache(tiers)
