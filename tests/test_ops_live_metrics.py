"""Every metric the alert rules and the dashboard query exists on a live server.

A real uvicorn server on the sample scene, with a real Redis as its shared tier, answers a
few tile requests (native zoom and past it, twice each, plus a burst of identical cold
requests); then its ``/metrics`` is scraped and parsed.

Decision: a name counts as present only when the exposition has at least one *sample*
with exactly that name (e.g. ``hndsr_tile_cache_total{tier=...,result=...}``), not merely
``# HELP``/``# TYPE`` lines: a labelled metric that never got a sample prints its TYPE line
but would leave its dashboard panel empty. The requests below are what makes each counter
move. ``hndsr_gpu_*`` is the exception: it exists only where CUDA is present, and is
checked to be absent (or present) accordingly.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import morecantile
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sr_engine.gpu_metrics import GPU_METRIC_NAMES, cuda_available
from tests.plugins.server import ServerPool
from tests.test_ops_observability import alert_rules, used_metric_names

SCENE_CENTER = (-54.5358, -25.3399)
TILE_ROUTE_RE = re.compile(r".*/tiles/.*")  # the route selector of the latency alert


def tile_url(base: str, scene: Path, z: int, dx: int = 0) -> str:
    tile = morecantile.tms.get("WebMercatorQuad").tile(*SCENE_CENTER, z)
    cog = scene / "landsat8" / "LC08_L1TP_224078_20200518_rgb8.tif"
    return f"{base}/cog/tiles/WebMercatorQuad/{z}/{tile.x + dx}/{tile.y}.png?url={cog}"


Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory, sample_scene: Path, redis_server_session
) -> Iterator[Samples]:
    """``sample name -> [(labels, value)]`` of a server that has served some tiles."""
    pool = ServerPool(tmp_path_factory.mktemp("ops-metrics"))
    try:
        env = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_REDIS_URL": redis_server_session.url}
        yield scrape_after_traffic(pool.start(env), sample_scene)
    finally:
        pool.close()


def scrape_after_traffic(base: str, sample_scene: Path) -> Samples:
    with httpx.Client(timeout=120) as client:
        for z in (12, 14):  # native resolution, then super-resolved
            for _ in range(2):  # miss, then hit
                response = client.get(tile_url(base, sample_scene, z))
                assert response.status_code == 200, response.text
        assert client.get(f"{base}/readyz").status_code == 200

    async def burst() -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            url = tile_url(base, sample_scene, 14, dx=1)
            responses = await asyncio.gather(*(client.get(url) for _ in range(6)))
            assert all(r.status_code == 200 for r in responses)

    asyncio.run(burst())
    text = httpx.get(f"{base}/metrics", timeout=30).text
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def test_every_queried_metric_has_samples_on_a_live_server(scraped: Samples) -> None:
    used = used_metric_names()
    assert len(used) >= 10
    expected = {name for name in used if not name.startswith("hndsr_gpu_")}
    missing = sorted(name for name in expected if not scraped.get(name))
    assert not missing, f"queried by alerts/dashboard but absent from /metrics: {missing}"


def test_the_requests_moved_the_counters(scraped: Samples) -> None:
    def total(name: str, **labels: str) -> float:
        return sum(
            value
            for sample_labels, value in scraped[name]
            if all(sample_labels.get(k) == v for k, v in labels.items())
        )

    assert total("hndsr_tile_cache_total", result="hit") >= 2
    assert total("hndsr_tile_cache_total", result="miss") >= 2
    assert total("hndsr_sr_tiles_total") >= 1
    assert total("hndsr_sr_inferences_total") >= 1
    # the label values the alert rules select exist
    tiers = {labels["tier"]: value for labels, value in scraped["hndsr_cache_tier_up"]}
    assert tiers.get("redis") == 1.0, tiers
    info = scraped.get("hndsr_model_info")
    assert info, "no hndsr_model_info sample (is the model loaded? see /readyz)"
    assert {"version", "mode", "device"} <= set(info[0][0])


def test_tile_requests_carry_the_route_label_the_alerts_select(scraped: Samples) -> None:
    """The latency alert and the dashboard select tile routes by template (``/tiles/``)."""
    by_route: dict[str, float] = defaultdict(float)
    for labels, value in scraped["hndsr_http_request_duration_seconds_count"]:
        by_route[labels["route"]] += value
    tile_requests = sum(v for route, v in by_route.items() if TILE_ROUTE_RE.fullmatch(route))
    assert tile_requests >= 10, f"tile requests per route label: {dict(by_route)}"
    rule = next(r for r in alert_rules() if r["alert"] == "HndsrTileLatencyP95High")
    assert 'route=~".*/tiles/.*"' in rule["expr"]


def test_gpu_metrics_only_where_cuda_is(scraped: Samples) -> None:
    gpu = [name for name in scraped if name.startswith("hndsr_gpu_")]
    if cuda_available():
        assert set(GPU_METRIC_NAMES[:3]) <= set(gpu)
    else:
        assert gpu == []
