"""Cross-process coalescing through Redis: one process computes a key, the others wait for it.

The computing process holds ``lock:<key>`` (``SET NX PX``, a random token, released with a
compare-and-delete); waiters poll for the entry and stop waiting as soon as the lock is gone
(the holder finished without storing, or crashed and the lock expired) or after ``wait_timeout``,
then compute themselves. A crashed holder therefore costs at most ``lock_ttl_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

from cache.entry import CorruptEntryError, Entry
from cache.redis_tier import RedisTier, TierUnavailableError

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

OWN_COMPUTATION = "local"
"""Token meaning: Redis is unusable, compute without a lock."""


class RedisCoalescer:
    """Redis lock + polling for the entry another process is computing."""

    def __init__(
        self,
        tier: RedisTier,
        lock_ttl_ms: int = 15_000,
        wait_timeout: float = 15.0,
        poll_interval: float = 0.025,
    ) -> None:
        self.tier = tier
        self.lock_ttl_ms = lock_ttl_ms
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self._release = tier.client.register_script(_RELEASE)

    async def acquire(self, key: str) -> str | None:
        """A token if this process should compute ``key`` (lock taken or Redis unusable);
        None if another process holds the lock."""
        token = secrets.token_hex(8)
        try:
            taken = await self.tier.call(
                self.tier.client.set, "lock:" + key, token, nx=True, px=self.lock_ttl_ms
            )
        except TierUnavailableError:
            return OWN_COMPUTATION
        return token if taken else None

    async def release(self, key: str, token: str) -> None:
        """Drop the lock if this token still holds it."""
        if token == OWN_COMPUTATION:
            return
        with contextlib.suppress(TierUnavailableError):  # else the lock expires by itself
            await self.tier.call(self._release, keys=["lock:" + key], args=[token])

    async def wait_for(self, key: str) -> Entry | None:
        """The entry once the lock holder stored it; None when it gave up, died, or time ran out."""
        deadline = time.monotonic() + self.wait_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(self.poll_interval)
            try:
                data, lock = await self.tier.call(self.tier.client.mget, key, "lock:" + key)
            except TierUnavailableError:
                return None
            if isinstance(data, bytes):
                try:
                    return Entry.decode(data)
                except CorruptEntryError:
                    return None
            if lock is None:
                return None
        return None
