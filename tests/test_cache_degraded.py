"""Degraded tiles through a real server: never stored, recomputed in the background, then hits."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.apps.http import TEST_APP, centre_tiles, metric, tile_path


def test_degraded_tile_is_not_stored_and_the_background_recompute_makes_the_next_a_hit(
    live_server, sample_scene: Path, tmp_path: Path
) -> None:
    fail_once = tmp_path / "fail-once"
    base = live_server(
        {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_TEST_FAIL_ONCE": str(fail_once)}, TEST_APP
    )
    path = tile_path(sample_scene, *centre_tiles(14, 1)[0], sr="auto")
    computed = metric(base, "hndsr_sr_tiles_total")
    fail_once.touch()  # the next model call fails: auto falls back to bicubic
    with httpx.Client(base_url=base, timeout=60) as client:
        degraded = client.get(path)
        assert degraded.status_code == 200
        assert degraded.headers["x-sr-mode"] == "degraded-bicubic"
        assert degraded.headers["x-cache"] == "MISS"
        assert degraded.headers["cache-control"] == "public, max-age=10"
        deadline = time.monotonic() + 30
        while metric(base, "hndsr_sr_tiles_total") == computed:  # the background recompute
            assert time.monotonic() < deadline, "no background recompute"
            time.sleep(0.05)
        time.sleep(0.5)  # its store follows the model call
        hit = client.get(path)
    assert hit.headers["x-cache"] == "HIT-memory"
    assert hit.headers["x-sr-mode"] not in ("degraded-bicubic", "bicubic")
    assert "max-age=86400" in hit.headers["cache-control"]
