"""``cache purge`` selections on a real disk cache and a real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis
from diskcache import Cache

from cache.entry import Entry
from cache.keys import parse_tile_request, tile_cache_key
from cache.purge import PurgeFilter, purge_disk, purge_redis
from cache.tiered import build_tiered_cache


def keys_for(dataset: str, zooms: range, model: str) -> list[str]:
    keys = []
    for z in zooms:
        request = parse_tile_request(f"/cog/tiles/WebMercatorQuad/{z}/1/2.png", f"url={dataset}")
        assert request is not None
        keys.append(tile_cache_key(request, dataset, "size=1;mtime=1", model))
    return keys


def test_purge_selects_by_dataset_zoom_and_model_on_disk_and_redis(
    tmp_path: Path, redis_server
) -> None:
    everything = (
        keys_for("/d/a.tif", range(10, 16), "m1")
        + keys_for("/d/b.tif", range(10, 16), "m1")
        + keys_for("/d/a.tif", range(10, 16), "m2")
    )

    async def fill() -> None:
        cache = build_tiered_cache(tmp_path / "disk", 16, 0, redis_server.url)
        for key in everything:
            await cache.set(key, Entry.create(b"tile", "image/png"))
        await cache.close()

    asyncio.run(fill())
    raw = redis.Redis.from_url(redis_server.url)

    def remaining() -> tuple[set[str], set[str]]:
        with Cache(str(tmp_path / "disk")) as disk:
            on_disk = set(disk.iterkeys())
        return on_disk, {k.decode() for k in raw.keys("hndsr:tile:*")}

    only_a_deep = PurgeFilter(dataset="/d/a.tif", min_zoom=14, max_zoom=15, model_version="m1")
    assert purge_disk(tmp_path / "disk", only_a_deep) == 2
    assert purge_redis(redis_server.url, only_a_deep) == 2
    gone = set(keys_for("/d/a.tif", range(14, 16), "m1"))
    assert remaining()[0] == remaining()[1] == set(everything) - gone

    assert purge_disk(tmp_path / "disk", PurgeFilter(model_version="m2")) == 6
    assert purge_redis(redis_server.url, PurgeFilter(dataset="/d/b.tif")) == 6
    assert len(remaining()[0]) == 18 - 2 - 6 and len(remaining()[1]) == 18 - 2 - 6
