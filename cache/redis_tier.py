"""The shared Redis tier (redis.asyncio + hiredis) behind a circuit breaker.

A down or frozen Redis costs at most a few short socket timeouts: after ``failure_threshold``
consecutive failures the breaker opens and every call fails at once; after ``reset_timeout``
one call is let through (half-open) and its outcome closes or re-opens the breaker.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cache.entry import Entry
from cache.tiers import TierCounters

T = TypeVar("T")

DEFAULT_TTL_S = 30 * 24 * 3600


class TierUnavailableError(RuntimeError):
    """The tier failed, or its circuit breaker is open."""


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a pause -> closed."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_timeout: float = 5.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.on_change = on_change
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at < self.reset_timeout:
            return "open"
        return "half-open"

    def allow(self) -> bool:
        """Whether a call may go out now (one probe at a time while half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """Record a call that worked."""
        self.failures = 0
        self._probing = False
        if self.opened_at is not None:
            self.opened_at = None
            if self.on_change:
                self.on_change(True)

    def failure(self) -> None:
        """Record a call that failed; opens the breaker at the threshold or on a failed probe."""
        self.failures += 1
        was_open = self.opened_at is not None
        if was_open or self.failures >= self.failure_threshold:
            self.opened_at = time.monotonic()
            self._probing = False
            if not was_open and self.on_change:
                self.on_change(False)


class RedisTier:
    """Tiles in Redis with a TTL, stored checksummed; every call goes through the breaker."""

    name = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: int = DEFAULT_TTL_S,
        socket_timeout: float = 0.25,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=64,
        )
        self._counters = TierCounters(self.name)
        self.breaker = breaker or CircuitBreaker()
        self.breaker.on_change = lambda up: self._counters.up.set(1 if up else 0)

    async def call(self, operation: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one client call through the breaker; raises ``TierUnavailableError``."""
        if not self.breaker.allow():
            raise TierUnavailableError("redis circuit breaker is open")
        try:
            result = await operation(*args, **kwargs)
        except (TimeoutError, RedisError, OSError) as exc:
            self.breaker.failure()
            self._counters.error.inc()
            raise TierUnavailableError(str(exc)) from exc
        self.breaker.success()
        return result

    async def get(self, key: str) -> Entry | None:
        """See ``CacheTier.get``; a corrupt entry is deleted and counted as an error."""
        try:
            data = await self.call(self.client.get, key)
        except TierUnavailableError:
            return None
        if not isinstance(data, bytes):  # None: the client does not decode responses
            self._counters.miss.inc()
            return None
        entry = self._counters.decode(data)
        if entry is None:
            await self.delete(key)
        return entry

    async def set(self, key: str, entry: Entry) -> None:
        """See ``CacheTier.set`` (expires after ``ttl_s``)."""
        with contextlib.suppress(TierUnavailableError):
            await self.call(self.client.set, key, entry.encode(), ex=self.ttl_s)

    async def delete(self, key: str) -> None:
        """See ``CacheTier.delete``."""
        with contextlib.suppress(TierUnavailableError):
            await self.call(self.client.delete, key)

    def healthy(self) -> bool:
        """False while the breaker is open or half-open."""
        return self.breaker.state == "closed"

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
