"""The cache tier interface and the two local tiers: an in-process LRU and diskcache.

Every tier implements ``CacheTier``: ``get`` / ``set`` / ``delete`` never raise for tier
trouble (a broken tier is a miss, counted as an error) and ``healthy`` says whether it works.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import diskcache

from cache.entry import CorruptEntryError, Entry
from cache.metrics import CACHE_TIER_UP, TILE_CACHE

log = logging.getLogger(__name__)


class CacheTier(Protocol):
    """One level of the tile cache."""

    name: str

    async def get(self, key: str) -> Entry | None:
        """The entry, or None on a miss, a corrupt entry (dropped) or a tier failure."""
        ...

    async def set(self, key: str, entry: Entry) -> None:
        """Store (overwrite) an entry; idempotent."""
        ...

    async def delete(self, key: str) -> None:
        """Drop an entry if present."""
        ...

    def healthy(self) -> bool:
        """True when the tier is usable right now."""
        ...


class TierCounters:
    """Pre-bound ``hndsr_tile_cache_total`` children of one tier (labels() is slow on hot paths)."""

    def __init__(self, tier: str) -> None:
        self.hit = TILE_CACHE.labels(tier, "hit")
        self.miss = TILE_CACHE.labels(tier, "miss")
        self.error = TILE_CACHE.labels(tier, "error")
        self.up = CACHE_TIER_UP.labels(tier)
        self.up.set(1)

    def decode(self, data: bytes) -> Entry | None:
        """The stored entry, counted as a hit; None for a corrupt one, counted as an error
        (the caller deletes it)."""
        try:
            entry = Entry.decode(data)
        except CorruptEntryError:
            self.error.inc()
            return None
        self.hit.inc()
        return entry


class MemoryTier:
    """In-process LRU bounded by the bytes it holds (entries larger than a quarter are skipped)."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._counters = TierCounters(self.name)

    def peek(self, key: str) -> Entry | None:
        """Synchronous lookup for the hit fast path: counts hits only (a miss goes on to
        ``get``, which counts it)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self._counters.hit.inc()
        return entry

    async def get(self, key: str) -> Entry | None:
        """See ``CacheTier.get``."""
        entry = self.peek(key)
        if entry is None:
            self._counters.miss.inc()
        return entry

    async def set(self, key: str, entry: Entry) -> None:
        """Insert as most recent, evicting least recently used entries beyond ``max_bytes``."""
        if entry.size * 4 > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size

    async def delete(self, key: str) -> None:
        """See ``CacheTier.delete``."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size

    def __len__(self) -> int:
        return len(self._entries)

    def healthy(self) -> bool:
        """Always usable."""
        return True


class DiskTier:
    """diskcache (SQLite + files) bounded by ``size_mb``; process- and thread-safe.

    Entries are stored checksummed; reads run inline (a local SQLite lookup is sub-millisecond),
    writes in a thread. A corrupt cache directory found at start-up is moved aside
    (``<dir>.corrupt-<time>``) and a fresh one created; one that cannot be opened (a full or
    read-only disk) leaves the tier disabled: every call a miss, ``healthy`` false.
    """

    name = "disk"

    def __init__(self, directory: Path, size_mb: int) -> None:
        self.directory = Path(directory)
        self.size_mb = size_mb
        self._counters = TierCounters(self.name)
        self._healthy = True
        self.moved_aside: Path | None = None
        """Where a corrupt cache directory was moved at start-up (None if it was not)."""
        self.cache: diskcache.Cache | None = None
        try:
            self.cache = self._open()
        except sqlite3.OperationalError as exc:  # full, read-only, locked: keep the data
            self._disable(exc)
        except sqlite3.DatabaseError as exc:  # malformed, not a database
            self._move_aside(exc)
        except OSError as exc:
            self._disable(exc)

    def _open(self) -> diskcache.Cache:
        return diskcache.Cache(
            str(self.directory),
            size_limit=self.size_mb * 2**20,
            eviction_policy="least-recently-stored",
        )

    def _disable(self, exc: BaseException) -> None:
        log.error("disk cache %s unusable, tier disabled: %s", self.directory, exc)
        self.cache = None
        self._failed()

    def _move_aside(self, exc: BaseException) -> None:
        aside = self.directory.with_name(f"{self.directory.name}.corrupt-{int(time.time())}")
        try:
            self.directory.rename(aside)
            self.cache = self._open()
        except (OSError, sqlite3.Error) as retry_exc:
            self._disable(retry_exc)
            return
        self.moved_aside = aside
        log.error("disk cache %s corrupt (%s): moved to %s", self.directory, exc, aside)

    def _failed(self) -> None:
        self._counters.error.inc()
        self._healthy = False
        self._counters.up.set(0)

    def _worked(self) -> None:
        if not self._healthy:
            self._healthy = True
            self._counters.up.set(1)

    async def get(self, key: str) -> Entry | None:
        """See ``CacheTier.get``; a corrupt entry is deleted and counted as an error."""
        if self.cache is None:
            return None
        try:
            data = self.cache.get(key)
        except (OSError, sqlite3.Error):
            self._failed()
            return None
        self._worked()
        if data is None:
            self._counters.miss.inc()
            return None
        entry = self._counters.decode(data)
        if entry is None:
            await self.delete(key)
        return entry

    async def set(self, key: str, entry: Entry) -> None:
        """See ``CacheTier.set``."""
        if self.cache is None:
            return
        try:
            await asyncio.to_thread(self.cache.set, key, entry.encode())
        except (OSError, sqlite3.Error):
            self._failed()
        else:
            self._worked()

    async def delete(self, key: str) -> None:
        """See ``CacheTier.delete``."""
        if self.cache is None:
            return
        try:
            self.cache.delete(key)
        except (OSError, sqlite3.Error):
            self._failed()

    def healthy(self) -> bool:
        """False after an I/O or SQLite error, until an operation works again; always false
        when the tier is disabled."""
        return self._healthy and self.cache is not None

    def close(self) -> None:
        """Close the SQLite connections."""
        if self.cache is not None:
            self.cache.close()
