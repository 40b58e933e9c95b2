"""The tile cache across real server processes sharing one real redis-server: coalescing,
a killed Redis, a frozen Redis."""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from pathlib import Path

import httpx

from tests.apps.http import TEST_APP, Knobs, centre_tiles, get_many, metric, tile_path

SR_TILES = "hndsr_sr_tiles_total"


def start_replicas(live_server, sample_scene: Path, redis_url: str, count: int, **env: str):
    """``count`` servers on the sample scene, each with its own (empty) disk cache."""
    return [
        live_server(
            {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_REDIS_URL": redis_url, **env}, TEST_APP
        )
        for _ in range(count)
    ]


def test_twenty_cold_requests_on_two_replicas_compute_once(
    live_server, sample_scene: Path, redis_server, tmp_path: Path
) -> None:
    knobs = Knobs(tmp_path)
    servers = start_replicas(live_server, sample_scene, redis_server.url, 2, **knobs.env())
    before = sum(metric(base, SR_TILES) for base in servers)  # warm-up tiles
    path = tile_path(sample_scene, *centre_tiles(14, 1)[0], sr="fast")
    knobs.close_gate()  # the model blocks until the gate opens: all 20 arrive in flight
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(get_many, base, [path] * 10) for base in servers]
        time.sleep(2.0)
        knobs.open_gate()
        responses = [r for future in futures for r in future.result()]
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    assert sum(metric(base, SR_TILES) for base in servers) - before == 1
    labels = sorted(r.headers["x-cache"] for r in responses)
    assert labels == ["COALESCED"] * 19 + ["MISS"]


def test_killed_redis_fails_no_request_and_a_restarted_one_serves_other_replicas(
    live_server, sample_scene: Path, redis_server
) -> None:
    first, second = start_replicas(live_server, sample_scene, redis_server.url, 2)
    paths = [tile_path(sample_scene, *tile, sr="bicubic") for tile in centre_tiles(14, 12)]
    statuses = []
    with httpx.Client(base_url=first, timeout=60) as client:
        for index, path in enumerate(paths):
            if index == 4:
                redis_server.kill()
            statuses.append(client.get(path).status_code)
        assert "cache-redis" in client.get("/readyz").json()["degraded"]
        assert statuses == [200] * len(paths)

        redis_server.start()  # empty: it had no persistence
        time.sleep(5.5)  # the breaker's reset timeout: the next call is the probe
        fresh = tile_path(sample_scene, *centre_tiles(14, 1, skip=20)[0], sr="bicubic")
        assert client.get(fresh).headers["x-cache"] == "MISS"
        assert "cache-redis" not in client.get("/readyz").json()["degraded"]
    response = httpx.get(second + fresh, timeout=60)
    assert response.status_code == 200 and response.headers["x-cache"] == "HIT-redis"


P95_BOUND_S = 0.5
"""A miss makes three Redis calls (lookup, lock, store): with a frozen Redis and no breaker,
each waits the 0.25 s socket timeout, so every miss would take >= 0.75 s."""


def test_frozen_redis_keeps_p95_under_bound(live_server, sample_scene: Path, redis_server) -> None:
    (server,) = start_replicas(live_server, sample_scene, redis_server.url, 1)
    tiles = centre_tiles(13, 24) + centre_tiles(14, 40)
    paths = [tile_path(sample_scene, *tile, sr="off") for tile in tiles]
    durations, statuses = [], []
    with httpx.Client(base_url=server, timeout=60) as client:
        client.get(paths[0])  # connections and GDAL warm
        redis_server.freeze()
        try:
            for path in paths[1:]:  # every one a miss: each would touch Redis three times
                started = time.monotonic()
                statuses.append(client.get(path).status_code)
                durations.append(time.monotonic() - started)
        finally:
            redis_server.resume()
    p95 = statistics.quantiles(durations, n=20)[-1]
    assert statuses == [200] * len(statuses)
    assert p95 < P95_BOUND_S, f"p95 {p95:.3f} s, max {max(durations):.3f} s"
