"""Through the real server: distinct concurrent tiles share model calls and keep their pixels."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.apps.http import TEST_APP, Knobs, centre_tiles, metric, pixels, tile_path

INFERENCES = "hndsr_sr_inferences_total"


@pytest.fixture
def start(
    live_server: Callable[..., str], sample_scene: Path, tmp_path: Path
) -> Callable[..., tuple[str, Knobs]]:
    def start_server(**env: str) -> tuple[str, Knobs]:
        knobs = Knobs(tmp_path)
        full_env = {"HNDSR_DATA_DIR": str(sample_scene), **knobs.env(), **env}
        return live_server(full_env, app=TEST_APP), knobs

    return start_server


def test_sixteen_distinct_tiles_share_model_calls_and_match_the_tile_alone(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    base, knobs = start(HNDSR_SR_MAX_BATCH="8")
    held, *tiles = centre_tiles(14, 17)
    before = metric(base, INFERENCES, mode="fast")
    knobs.close_gate()

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            first = asyncio.create_task(client.get(tile_path(sample_scene, *held, sr="fast")))
            while metric(base, INFERENCES, mode="fast") - before < 1:
                await asyncio.sleep(0.05)
            limits = httpx.Limits(max_connections=20)
            async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as many:
                tasks = [many.get(tile_path(sample_scene, *t, sr="fast")) for t in tiles]
                gathered = asyncio.gather(*tasks)
                while metric(base, "hndsr_sr_queue_depth") < 16:
                    await asyncio.sleep(0.05)
                knobs.open_gate()
                responses = await gathered
            await first
            return list(responses)

    batched = asyncio.run(run())
    assert [r.status_code for r in batched] == [200] * 16
    calls = metric(base, INFERENCES, mode="fast") - before
    assert calls < 16
    assert calls == 3  # the held call, then two full batches of 8
    for tile, response in zip(tiles, batched, strict=True):
        # sr=auto runs the same mode under another cache key: computed again, alone
        alone = httpx.get(base + tile_path(sample_scene, *tile, sr="auto"), timeout=60)
        assert alone.headers["x-sr-mode"] == "fast"
        assert np.abs(pixels(alone) - pixels(response)).max() <= 1


def test_sustained_load_fills_batches_to_at_least_half(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    max_batch = 4
    base, _ = start(HNDSR_SR_MAX_BATCH=str(max_batch), HNDSR_TEST_DELAY_S="0.2")
    paths = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(14, 48)]
    count_before = metric(base, "hndsr_sr_batch_size_count")
    sum_before = metric(base, "hndsr_sr_batch_size_sum")
    statuses: list[int] = []

    def client(share: list[str]) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            statuses.extend(http.get(p).status_code for p in share)

    workers = [
        threading.Thread(target=client, args=(paths[i :: 2 * max_batch],))
        for i in range(2 * max_batch)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert statuses == [200] * len(paths)
    batches = metric(base, "hndsr_sr_batch_size_count") - count_before
    mean = (metric(base, "hndsr_sr_batch_size_sum") - sum_before) / batches
    assert mean >= max_batch / 2
