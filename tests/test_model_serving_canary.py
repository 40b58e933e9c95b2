"""Canary serving: a stable share of the map's blocks goes to the challenger.

The split itself over 10,000 tile keys, then real servers (``tests.apps.versioned_app``,
stand-in models) as two replicas and after a restart.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.apps.http import centre_tiles, get_many, metric, tile_path
from tests.apps.model_versions import roles_env
from tileserver.canary import CANARY, CHAMPION, CanarySplit

APP = "tests.apps.versioned_app:create_app"


def random_tiles(count: int, seed: int = 7) -> list[tuple[str, int, int, int]]:
    """``count`` random tile keys (WebMercatorQuad and WorldCRS84Quad, zooms 6-20)."""
    rng = random.Random(seed)
    tiles = []
    for _ in range(count):
        tms, z = rng.choice(["WebMercatorQuad", "WorldCRS84Quad"]), rng.randint(6, 20)
        width = 2**z * (2 if tms == "WorldCRS84Quad" else 1)
        tiles.append((tms, z, rng.randrange(width), rng.randrange(2**z)))
    return tiles


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5])
def test_the_canary_share_of_10000_tiles_is_the_setting(fraction: float) -> None:
    split = CanarySplit(fraction)
    roles = [split.role(*tile) for tile in random_tiles(10_000)]
    share = roles.count(CANARY) / len(roles)
    assert abs(share - fraction) <= 0.02, share


def test_the_split_is_the_same_in_another_instance_and_grows_with_the_fraction() -> None:
    tiles = random_tiles(10_000)
    first = [CanarySplit(0.1).role(*t) for t in tiles]
    assert first == [CanarySplit(0.1).role(*t) for t in tiles]  # a restart, a replica
    wider = [CanarySplit(0.2).role(*t) for t in tiles]
    assert all(w == CANARY for f, w in zip(first, wider, strict=True) if f == CANARY)


def test_whole_blocks_switch_model() -> None:
    split = CanarySplit(0.5, block_zoom_offset=4)
    blocks = random_tiles(300, seed=3)
    seen = set()
    for tms, z, x, y in blocks:
        children = {
            split.role(tms, z + 4, x * 16 + dx, y * 16 + dy) for dx in range(16) for dy in range(16)
        }
        assert len(children) == 1  # all 256 tiles of the block: one model
        seen |= children
    assert seen == {CANARY, CHAMPION}


def test_replicas_and_a_restart_serve_the_same_blocks_with_the_canary(
    live_server, tmp_path: Path, sample_scene: Path
) -> None:
    env = {
        **roles_env(sample_scene, tmp_path, "canary"),
        "HNDSR_CANARY_FRACTION": "0.5",
        "HNDSR_CANARY_BLOCK_ZOOM_OFFSET": "1",  # 2x2 blocks: several in the sample scene
        "HNDSR_SR_LATENCY_BUDGET_MS": "0",  # 32 cold tiles at once: all wait for their model
    }
    tiles = centre_tiles(15, 32)
    paths = [tile_path(sample_scene, *t, sr="fast") for t in tiles]
    split = CanarySplit(0.5, block_zoom_offset=1)
    expected = [f"{split.role('WebMercatorQuad', *t)}-1" for t in tiles]

    first, second = live_server(env, APP), live_server(env, APP)
    warm_up = metric(first, "hndsr_sr_tiles_total", version="canary-1")  # one tile per mode
    served = {}
    for base in (first, second):
        responses = get_many(base, paths)
        assert [r.status_code for r in responses] == [200] * len(paths)
        served[base] = [r.headers["x-sr-model"] for r in responses]
    assert served[first] == served[second] == expected
    by_block = defaultdict(set)
    for tile, model in zip(tiles, expected, strict=True):
        by_block[split.block("WebMercatorQuad", *tile)].add(model)
    assert all(len(models) == 1 for models in by_block.values())
    assert set(expected) == {"champion-1", "canary-1"}

    hits = get_many(first, paths)  # cache hits replay the model that computed them
    assert [r.headers["x-sr-model"] for r in hits] == expected
    assert {r.headers["x-cache"] for r in hits} == {"HIT-memory"}
    canary_tiles = metric(first, "hndsr_sr_tiles_total", version="canary-1") - warm_up
    assert canary_tiles == expected.count("canary-1")

    restarted = live_server(env, APP)  # a fresh process and cache: the same blocks
    assert [r.headers["x-sr-model"] for r in get_many(restarted, paths)] == expected
    ready = httpx.get(f"{restarted}/readyz", timeout=30).json()
    assert ready["model"]["roles"]["canary"]["version"] == "canary-1"


def test_stac_asset_reads_use_the_canary_chosen_for_the_tile(
    live_server, tmp_path: Path, sample_scene: Path
) -> None:
    env = {
        **roles_env(sample_scene, tmp_path, "canary"),
        "HNDSR_CANARY_FRACTION": "1",  # every block
    }
    base = live_server(env, APP)
    z, x, y = centre_tiles(14, 1)[0]
    item = sample_scene / "landsat8" / "LC08_L1TP_224078_20200518_rgb8.json"
    stac = f"/stac/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url={item}&assets=visual&sr=fast"
    cog = tile_path(sample_scene, z, x, y, sr="fast")
    for response in get_many(base, [stac, cog]):  # STAC assets are read in rio-tiler threads
        assert response.status_code == 200, response.text
        assert response.headers["x-sr-model"] == "canary-1"
