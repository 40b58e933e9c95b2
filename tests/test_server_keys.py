"""Through a real server: API keys, signed URL tokens and the cold-SR rate limit (in Redis)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.apps.http import TEST_APP, centre_tiles, tile_path
from tileserver.auth import sign_token
from tileserver.ratelimit import TokenBuckets

SECRET = "test-signing-secret"


@pytest.fixture
def keyed_server(live_server, sample_scene: Path, tmp_path: Path, redis_server) -> str:
    return live_server(
        {
            "HNDSR_DATA_DIR": str(sample_scene),
            "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
            "HNDSR_API_KEYS": "alpha-key,beta-key",
            "HNDSR_URL_SIGNING_SECRET": SECRET,
            "HNDSR_RATE_LIMIT_PER_MINUTE": "0.6",  # one token per 100 s: none refills here
            "HNDSR_RATE_LIMIT_BURST": "2",
            "HNDSR_REDIS_URL": redis_server.url,
        },
        app=TEST_APP,
    )


def test_keys_tokens_and_the_cold_sr_rate_limit(keyed_server: str, sample_scene: Path) -> None:
    tiles = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(14, 4, skip=18)]
    with httpx.Client(base_url=keyed_server, timeout=60) as client:
        assert client.get("/healthz").status_code == 200  # probes need no key
        missing = client.get(tiles[0])
        assert missing.status_code == 401 and "WWW-Authenticate" in missing.headers
        assert client.get(tiles[0] + "&key=wrong").status_code == 403
        expired = sign_token(SECRET, "qgis", int(time.time()) - 10)
        assert client.get(tiles[0] + f"&token={expired}").status_code == 403
        forged = sign_token("other-secret", "qgis", int(time.time()) + 600)
        assert client.get(tiles[0] + f"&token={forged}").status_code == 403

        # alpha (as a URL parameter, as QGIS and Leaflet templates hold it) has 2 tokens
        first = client.get(tiles[0] + "&key=alpha-key")
        assert first.status_code == 200 and first.headers["X-SR-Mode"] == "fast"
        assert client.get(tiles[1] + "&key=alpha-key").status_code == 200
        limited = client.get(tiles[2] + "&key=alpha-key")
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        # a cache hit costs nothing, and the key is not part of the cache key
        hit = client.get(tiles[0], headers={"X-API-Key": "alpha-key"})
        assert hit.status_code == 200 and hit.headers["X-Cache"].startswith("HIT")

        # another client is served meanwhile: beta by header, and a signed token
        other = client.get(tiles[2], headers={"X-API-Key": "beta-key"})
        assert other.status_code == 200 and other.headers["X-SR-Mode"] == "fast"
        token = sign_token(SECRET, "qgis", int(time.time()) + 600)
        assert client.get(tiles[3] + f"&token={token}").status_code == 200


def test_in_process_buckets_refill_at_their_rate() -> None:
    buckets = TokenBuckets(rate_per_s=10.0, burst=2)

    async def run() -> tuple[float, float, float]:
        await buckets.take("a", 1)
        await buckets.take("a", 1)
        empty = await buckets.take("a", 0)
        await asyncio.sleep(0.25)
        return empty, await buckets.take("a", 0), await buckets.take("b", 0)

    empty, refilled, other = asyncio.run(run())
    assert empty < 1
    assert refilled >= 1.5
    assert other == 2
