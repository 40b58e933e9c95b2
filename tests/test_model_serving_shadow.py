"""Shadow serving: a challenger recomputes sampled live tiles, never in front of live work.

The runner against a real runtime (overload: shadow work is dropped, live work is not),
then a real server with a 100% shadow: ``hndsr_shadow_*`` metrics, nothing user-visible.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY

from sr_engine.interface import regular_field
from sr_engine.runtime import Overloaded, SRRuntime
from sr_engine.shadow import ShadowRunner, psnr_db
from tests.apps.http import centre_tiles, get_many, metric, tile_path
from tests.apps.model_versions import roles_env
from tests.apps.polling import wait_until
from tests.apps.upscalers import TestUpscaler

APP = "tests.apps.versioned_app:create_app"
LR = np.full((3, 20, 20), 0.5, np.float32)
COORDS = regular_field(np.array([[2.0, 2.0]]), (2.0, 2.0), (32, 32))[0]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def offer(shadow: ShadowRunner) -> bool:
    return shadow.offer(LR, COORDS, (0, 0), "fast", np.full((3, 32, 32), 0.5, np.float32))


def test_psnr_of_identical_and_different_tiles() -> None:
    a = np.zeros((3, 8, 8), np.float32)
    assert psnr_db(a, a) == 100.0
    assert abs(psnr_db(a, a + 0.1) - 20.0) < 1e-4


def test_an_idle_runtime_lets_the_shadow_compute_and_measure() -> None:
    live, challenger = TestUpscaler(), TestUpscaler()
    runtime = SRRuntime(live)
    runtime.start()
    shadow = ShadowRunner(challenger, runtime)
    shadow.start()
    tiles, psnr = sample("hndsr_shadow_tiles_total"), sample("hndsr_shadow_psnr_db_count")
    assert offer(shadow)
    wait_until(lambda: sample("hndsr_shadow_tiles_total") == tiles + 1, what="the shadow tile")
    assert sample("hndsr_shadow_psnr_db_count") == psnr + 1
    assert challenger.batch_sizes == [1] and live.calls == []
    shadow.stop()
    runtime.drain()


def test_under_overload_shadow_work_is_dropped_and_live_work_is_not() -> None:
    gate = threading.Event()
    live, challenger = TestUpscaler(gate=gate), TestUpscaler()
    runtime = SRRuntime(live, max_batch=1, max_wait_ms=0, queue_limit=4, latency_budget_s=None)
    runtime.start()
    shadow = ShadowRunner(challenger, runtime, queue_limit=2, max_age_s=0.2)
    shadow.start()
    full, stale = (sample("hndsr_shadow_dropped_total", reason=r) for r in ("queue_full", "stale"))
    held = [runtime.submit(LR, COORDS)]
    wait_until(live.entered.is_set, what="the live batch")  # running: out of the queue
    held += [runtime.submit(LR, COORDS) for _ in range(4)]  # the 4 the queue holds
    offered = [offer(shadow) for _ in range(6)]
    try:
        runtime.submit(LR, COORDS)
        raise AssertionError("the live queue should be full")
    except Overloaded:
        pass
    dropped_full = sample("hndsr_shadow_dropped_total", reason="queue_full") - full
    assert offered.count(False) == dropped_full >= 3  # one taken, two queued, the rest refused
    wait_until(
        lambda: sample("hndsr_shadow_dropped_total", reason="stale") - stale == 6 - dropped_full,
        what="the taken and queued shadow jobs dropped as stale",
    )
    assert challenger.calls == []  # never ran while live work waited
    gate.set()
    assert all(future.result(timeout=30).shape == (3, 32, 32) for future in held)
    shadow.stop()
    runtime.drain()


def test_a_server_with_a_100_percent_shadow_reports_agreement_and_serves_the_champion(
    live_server, tmp_path: Path, sample_scene: Path
) -> None:
    env = {
        **roles_env(sample_scene, tmp_path, "shadow"),
        "HNDSR_SHADOW_RATE": "1",
    }
    base = live_server(env, APP)
    paths = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(14, 8)]
    for path in paths:  # one at a time: the live runtime is idle between tiles
        (response,) = get_many(base, [path])
        assert response.status_code == 200 and response.headers["x-sr-model"] == "champion-1"
    wait_until(
        lambda: (
            metric(base, "hndsr_shadow_tiles_total") + metric(base, "hndsr_shadow_dropped_total")
            == len(paths)
        ),
        what="every offered shadow job computed or dropped",
    )
    computed = metric(base, "hndsr_shadow_tiles_total")
    assert computed >= 1
    assert metric(base, "hndsr_shadow_psnr_db_count") == computed
    assert metric(base, "hndsr_shadow_psnr_db_bucket", le="100.0") == computed  # same pixels
    assert metric(base, "hndsr_shadow_latency_seconds_count") == computed
    assert metric(base, "hndsr_sr_tiles_total", version="shadow-1") == 0  # not a live model
    hits = get_many(base, paths)
    assert {r.headers["x-sr-model"] for r in hits} == {"champion-1"}
