"""Invalidation: delete stored tiles by dataset, zoom range and/or model version.

Works on the shared tiers (a disk cache folder, Redis); the in-process memory tier of
running servers is not reached, but a new model version or a changed source never hits
old entries anyway (both are part of the key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import diskcache
import redis

from cache.keys import (
    KEY_PREFIX,
    KeyParts,
    dataset_hash,
    model_field,
    normalize_url,
    parse_key,
)


@dataclass(frozen=True)
class PurgeFilter:
    """Which keys to delete; unset fields match everything."""

    dataset: str | None = None
    min_zoom: int | None = None
    max_zoom: int | None = None
    model_version: str | None = None

    def matcher(self) -> Callable[[KeyParts], bool]:
        """A predicate over parsed keys."""
        dataset = dataset_hash(normalize_url(self.dataset)) if self.dataset else None
        model = model_field(self.model_version) if self.model_version else None
        low = -1 if self.min_zoom is None else self.min_zoom
        high = 99 if self.max_zoom is None else self.max_zoom

        def match(parts: KeyParts) -> bool:
            return (
                (dataset is None or parts.dataset == dataset)
                and (model is None or parts.model_version == model)
                and low <= parts.z <= high
            )

        return match


def purge_disk(directory: Path, selection: PurgeFilter) -> int:
    """Delete matching tiles from a disk cache folder; returns how many."""
    match = selection.matcher()
    deleted = 0
    with diskcache.Cache(str(directory)) as cache:
        for key in list(cache.iterkeys()):
            parts = parse_key(key) if isinstance(key, str) else None
            if parts is not None and match(parts) and cache.delete(key):
                deleted += 1
    return deleted


def purge_redis(url: str, selection: PurgeFilter, batch: int = 500) -> int:
    """Delete matching tiles from Redis (SCAN + UNLINK in batches); returns how many."""
    match = selection.matcher()
    client = redis.Redis.from_url(url)
    deleted = 0
    pending: list[bytes] = []
    for key in client.scan_iter(match=KEY_PREFIX + "*", count=batch):
        parts = parse_key(key.decode("utf-8", "replace"))
        if parts is not None and match(parts):
            pending.append(key)
        if len(pending) >= batch:
            deleted += int(client.unlink(*pending))
            pending.clear()
    if pending:
        deleted += int(client.unlink(*pending))
    client.close()
    return deleted
