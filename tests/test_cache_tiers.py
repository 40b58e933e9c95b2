"""Cache tiers against real diskcache and a real redis-server: bounds, promotion, checksums,
and the circuit breaker in front of a killed or frozen Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis
from prometheus_client import REGISTRY

from cache.entry import Entry
from cache.redis_tier import CircuitBreaker, RedisTier
from cache.tiered import TieredCache, build_tiered_cache
from cache.tiers import DiskTier, MemoryTier


def entry(n: int, size: int = 1000) -> Entry:
    return Entry.create(bytes([n % 256]) * size, "image/png", (("x-sr-mode", "fast"),))


def test_entry_roundtrip_and_checksum_rejects_any_flipped_byte() -> None:
    original = entry(7)
    data = original.encode()
    assert Entry.decode(data) == original
    for position in (0, 10, len(data) // 2, len(data) - 1):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        try:
            Entry.decode(bytes(flipped))
        except ValueError:
            continue
        raise AssertionError(f"flipped byte {position} went unnoticed")
    for cut in (1, 17, len(data) - 20):
        try:
            Entry.decode(data[:cut])
        except ValueError:
            continue
        raise AssertionError(f"truncation at {cut} went unnoticed")


def test_memory_tier_is_bounded_in_bytes_and_evicts_least_recently_used() -> None:
    tier = MemoryTier(max_bytes=5 * entry(0).size)

    async def scenario() -> None:
        for n in range(5):
            await tier.set(f"k{n}", entry(n))
        assert await tier.get("k0") is not None  # k0 becomes most recent
        await tier.set("k5", entry(5))
        assert tier.bytes <= tier.max_bytes
        assert await tier.get("k1") is None  # least recently used went first
        assert await tier.get("k0") is not None

    asyncio.run(scenario())
    assert len(tier) == 5


def test_read_through_promotes_to_faster_tiers(tmp_path: Path, redis_server) -> None:
    async def scenario() -> None:
        writer = build_tiered_cache(tmp_path / "a", 16, 1, redis_server.url)
        await writer.set("key", entry(1))
        await writer.close()

        reader = build_tiered_cache(tmp_path / "b", 16, 1, redis_server.url)
        memory, disk, _ = reader.tiers
        assert await memory.get("key") is None and await disk.get("key") is None
        assert (await reader.get("key"))[1] == "redis"
        assert await disk.get("key") == entry(1)
        assert (await reader.get("key"))[1] == "memory"
        await reader.close()

        from_disk = build_tiered_cache(tmp_path / "b", 16, 1, None)
        assert (await from_disk.get("key"))[1] == "disk"
        assert (await from_disk.get("key"))[1] == "memory"
        await from_disk.close()

    asyncio.run(scenario())


def test_corrupt_disk_entry_is_dropped_not_served(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, 16)

    async def scenario() -> None:
        good = entry(3).encode()
        tier.cache.set("truncated", good[: len(good) // 2])
        tier.cache.set("flipped", good[:-1] + bytes([good[-1] ^ 0xFF]))
        assert await tier.get("truncated") is None
        assert await tier.get("flipped") is None
        assert "truncated" not in tier.cache and "flipped" not in tier.cache

    asyncio.run(scenario())


def test_corrupt_redis_entry_is_dropped_and_the_next_tier_answers(
    tmp_path: Path, redis_server
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    raw.set("key", entry(4).encode()[:-3])

    async def scenario() -> None:
        cache = TieredCache([RedisTier(redis_server.url)])
        assert await cache.get("key") is None
        await cache.close()

    asyncio.run(scenario())
    assert raw.exists("key") == 0


def test_breaker_fails_fast_while_redis_is_frozen_and_resumes_by_itself(redis_server) -> None:
    socket_timeout = 0.3

    async def scenario() -> None:
        tier = RedisTier(
            redis_server.url,
            socket_timeout=socket_timeout,
            breaker=CircuitBreaker(failure_threshold=2, reset_timeout=0.5),
        )
        await tier.set("key", entry(5))
        redis_server.freeze()
        try:
            slow = 0
            for _ in range(30):
                started = time.monotonic()
                assert await tier.get("key") is None
                slow += time.monotonic() - started >= socket_timeout * 0.9
            assert slow <= 2  # only the calls that opened the breaker waited
            assert not tier.healthy()
            assert REGISTRY.get_sample_value("hndsr_cache_tier_up", {"tier": "redis"}) == 0
        finally:
            redis_server.resume()
        await asyncio.sleep(0.6)  # past reset_timeout: the next call is the half-open probe
        assert await tier.get("key") == entry(5)
        assert tier.healthy()
        assert REGISTRY.get_sample_value("hndsr_cache_tier_up", {"tier": "redis"}) == 1
        await tier.close()

    asyncio.run(scenario())


def test_killed_redis_is_a_miss_and_a_restarted_one_is_used_again(redis_server) -> None:
    async def scenario() -> None:
        tier = RedisTier(redis_server.url, breaker=CircuitBreaker(1, reset_timeout=0.2))
        redis_server.kill()
        await tier.set("key", entry(6))
        assert await tier.get("key") is None
        assert not tier.healthy()
        redis_server.start()
        await asyncio.sleep(0.3)
        await tier.set("key", entry(6))
        assert await tier.get("key") == entry(6)
        assert tier.healthy()
        await tier.close()

    asyncio.run(scenario())
