"""``hndsr-tiles prewarm`` and ``worker`` as real processes: tile planning, skip-cached,
resume from the progress file, a distributed run that loses a worker mid-way, and the
prewarm of a MosaicJSON served afterwards from the cache by a real server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import diskcache
import httpx
import morecantile
import pytest
import rasterio
import redis
from rio_tiler.io import Reader

from cache.cli import plan_prewarm
from cache.keys import dataset_hash, normalize_url, parse_key
from cache.prewarm import TileSource, dataset_bounds, get_when_not_busy, plan_tiles
from cache.prewarm_queue import GROUP, enqueue
from tests.apps.http import CENTRE, SCENE, TEST_APP
from tests.test_mosaic import BOUNDARY_COL, WIDTH, cut

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
BBOX = f"{CENTRE[0] - 0.02},{CENTRE[1] - 0.015},{CENTRE[0] + 0.02},{CENTRE[1] + 0.015}"


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``hndsr-tiles`` in a subprocess."""
    command = [sys.executable, "-c", "from tileserver.cli import app; app()", *args]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


def test_plan_keeps_only_tiles_touching_the_geometry() -> None:
    tms = morecantile.tms.get("WebMercatorQuad")
    footprint = (-1.0, -1.0, 1.0, 1.0)
    square = list(plan_tiles(tms, footprint, [11], bbox=(-1.0, -1.0, 1.0, 1.0)))
    triangle = {
        "type": "Polygon",
        "coordinates": [[[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]],
    }
    touched = list(plan_tiles(tms, footprint, [11], geometries=[triangle]))
    assert 0.5 * len(square) < len(touched) < 0.75 * len(square)
    corner = tms.tile(0.9, 0.9, 11)  # far from the triangle
    assert corner in square and corner not in touched


def test_prewarm_computes_skips_cached_and_resumes(sample_scene: Path, tmp_path: Path) -> None:
    env = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_CACHE_DIR": str(tmp_path / "cache")}
    url = str(sample_scene / SCENE)
    args = ["prewarm", url, "--zoom", "14", "--bbox", BBOX, "--sr", "bicubic", "--app", TEST_APP]
    dry = cli(*args, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    total = int(dry.stdout.split()[0])
    assert 4 <= total <= 12

    progress = tmp_path / "progress"
    tiles = list(
        plan_tiles(
            morecantile.tms.get("WebMercatorQuad"),
            (-180, -85, 180, 85),
            [14],
            bbox=tuple(map(float, BBOX.split(","))),
        )
    )
    progress.write_text(f"{tiles[0].z}/{tiles[0].x}/{tiles[0].y}\n")  # as if interrupted
    first = cli(*args, "--progress-file", str(progress), env=env)
    assert first.returncode == 0, first.stderr
    assert f"done {total - 1}, skipped 1, failed 0" in first.stdout
    assert not progress.exists()  # a finished run removes its progress file

    second = cli(*args, "--progress-file", str(progress), env=env)
    # cached tiles are skipped; the one the progress file listed was never requested before
    assert f"done 1, skipped {total - 1}, failed 0" in second.stdout


def test_distributed_prewarm_survives_a_killed_worker(
    sample_scene: Path, tmp_path: Path, redis_server
) -> None:
    url = str(sample_scene / SCENE)
    base_env = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_REDIS_URL": redis_server.url}
    enqueued = cli(
        *("prewarm", url, "--zoom", "14-15", "--bbox", BBOX, "--sr", "fast"),
        *("--queue", redis_server.url),
        env=base_env,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    total = int(enqueued.stdout.split()[0])
    outside = "/cog/tiles/WebMercatorQuad/14/5710/9384.png?url=/etc/passwd&sr=fast"
    asyncio.run(enqueue(redis_server.url, [outside]))  # a job that really fails (403)

    def worker(name: str) -> subprocess.Popen:
        env = {
            **os.environ,
            **base_env,
            "HNDSR_CACHE_DIR": str(tmp_path / name),
            "HNDSR_TEST_DELAY_S": "0.3",
        }
        args = ["worker", "--queue", redis_server.url, "--name", name, "--app", TEST_APP]
        args += ["--batch", "3", "--claim-idle-ms", "1500", "--exit-when-drained"]
        command = [sys.executable, "-c", "from tileserver.cli import app; app()", *args]
        log = (tmp_path / f"{name}.log").open("w")
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    raw = redis.Redis.from_url(redis_server.url)
    doomed, survivor = worker("doomed"), worker("survivor")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it while it holds unacked jobs, after some acks
        group = next(g for g in raw.xinfo_groups("hndsr:prewarm") if g["name"] == GROUP.encode())
        acked = (group["entries-read"] or 0) - group["pending"]
        holding = raw.xpending_range("hndsr:prewarm", GROUP, "-", "+", 100, consumername="doomed")
        if acked >= 2 and holding:
            doomed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the doomed worker never held jobs")
    doomed.wait()
    assert survivor.wait(timeout=240) == 0, (tmp_path / "survivor.log").read_text()

    keys = raw.keys("hndsr:tile:*")
    assert len(keys) == total == len(set(keys))
    dead = raw.xrange("hndsr:prewarm:dead")
    assert [fields[b"path"].decode() for _, fields in dead] == [outside]
    reclaimed = re.search(r"reclaimed (\d+)", (tmp_path / "survivor.log").read_text())
    assert reclaimed and int(reclaimed[1]) >= 1
    group = next(g for g in raw.xinfo_groups("hndsr:prewarm") if g["name"] == GROUP.encode())
    assert group["pending"] == 0


def test_prewarm_interrupted_by_ctrl_c_resumes(sample_scene: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HNDSR_DATA_DIR": str(sample_scene),
        "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
        "HNDSR_TEST_DELAY_S": "0.4",
    }
    progress = tmp_path / "progress"
    args = ["prewarm", str(sample_scene / SCENE), "--zoom", "14", "--bbox", BBOX, "--sr", "fast"]
    args += ["--app", TEST_APP, "--concurrency", "1", "--progress-file", str(progress)]
    command = [sys.executable, "-c", "from tileserver.cli import app; app()", *args]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (progress.exists() and progress.read_text().strip()):
        assert time.monotonic() < deadline and run.poll() is None, "no tile finished"
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    output = run.communicate(timeout=60)[0].decode()
    assert run.returncode == 130 and "interrupted" in output, output
    finished = progress.read_text().split()
    assert finished

    rerun = cli(*args, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    done, skipped = map(
        int, re.search(r"done (\d+), skipped (\d+), failed 0", rerun.stdout).groups()
    )
    assert skipped >= len(finished) and done >= 1
    assert done + skipped == int(rerun.stdout.split()[0])  # every tile of the area
    assert not progress.exists()


def test_prewarm_of_a_stac_item_fills_the_cache(sample_scene: Path, tmp_path: Path) -> None:
    env = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_CACHE_DIR": str(tmp_path / "cache")}
    item = str(sample_scene / SCENE.replace(".tif", ".json"))
    args = ["prewarm", item, "--zoom", "13", "--bbox", BBOX, "--assets", "visual", "--sr", "off"]
    args += ["--progress-file", str(tmp_path / "progress")]
    first = cli(*args, env=env)
    total = int(first.stdout.split()[0])
    assert first.returncode == 0 and f"done {total}, skipped 0, failed 0" in first.stdout
    second = cli(*args, env=env)
    assert f"done 0, skipped {total}, failed 0" in second.stdout


def test_worker_retries_a_failing_job_then_dead_letters_it(
    sample_scene: Path, tmp_path: Path, redis_server
) -> None:
    fail = tmp_path / "fail"
    fail.touch()  # every model call raises: an explicit mode answers 503
    path = f"/cog/tiles/WebMercatorQuad/14/5710/9384.png?url={sample_scene / SCENE}&sr=fast"
    asyncio.run(enqueue(redis_server.url, [path]))
    env = {
        "HNDSR_DATA_DIR": str(sample_scene),
        "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
        "HNDSR_TEST_FAIL": str(fail),
    }
    args = ["worker", "--queue", redis_server.url, "--app", TEST_APP, "--max-deliveries", "3"]
    result = cli(*args, "--claim-idle-ms", "200", "--exit-when-drained", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retried 2" in result.stdout and "dead-lettered 1" in result.stdout
    ((_, fields),) = redis.Redis.from_url(redis_server.url).xrange("hndsr:prewarm:dead")
    assert fields[b"path"].decode() == path
    assert fields[b"deliveries"] == b"3" and fields[b"error"] == b"HTTP 503"


@pytest.fixture(scope="module")
def mosaic_dir(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two adjacent COGs cut from the sample scene and ``area.mosaic.json`` of both."""
    data = tmp_path_factory.mktemp("prewarm-mosaic")
    (data / "cogs").mkdir()
    with rasterio.open(sample_scene / SCENE) as scene:
        cut(scene, BOUNDARY_COL - WIDTH, data / "cogs" / "west.tif")
        cut(scene, BOUNDARY_COL, data / "cogs" / "east.tif")
    created = cli("mosaic", "create", str(data / "area.mosaic.json"), str(data / "cogs"), env={})
    assert created.returncode == 0, created.stderr
    return data


def test_a_mosaic_plans_only_tiles_its_cogs_cover(mosaic_dir: Path) -> None:
    """The document's bounds hold tiles that neither COG intersects (titiler.mosaic answers
    204 No Content for them): the plan leaves them out."""
    source = TileSource(url=str(mosaic_dir / "area.mosaic.json"), endpoint="mosaicjson")
    planned = plan_prewarm(source, "14")
    in_bounds = list(plan_tiles(WEB_MERCATOR, dataset_bounds(source), [14]))
    with (
        Reader(str(mosaic_dir / "cogs" / "west.tif")) as west,
        Reader(str(mosaic_dir / "cogs" / "east.tif")) as east,
    ):
        covered = [t for t in in_bounds if west.tile_exists(*t) or east.tile_exists(*t)]
    assert planned == covered
    assert len(covered) < len(in_bounds)


def test_prewarm_of_a_mosaic_fills_the_cache_the_server_answers_from(
    mosaic_dir: Path, tmp_path: Path, live_server
) -> None:
    """Prewarm the tiles across the COG boundary, then a real server on the same cache
    answers each from it; an uncovered tile of the bounds is titiler's 204."""
    document = str(mosaic_dir / "area.mosaic.json")
    lon0, lat0, lon1, lat1 = json.loads(Path(document).read_text())["bounds"]
    lon, lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2  # on the boundary of the two COGs
    bbox = f"{lon - 0.02},{lat - 0.015},{lon + 0.02},{lat + 0.015}"
    env = {"HNDSR_DATA_DIR": str(mosaic_dir), "HNDSR_CACHE_DIR": str(tmp_path / "cache")}
    args = ["prewarm", document, "--zoom", "14", "--bbox", bbox, "--sr", "fast", "--app", TEST_APP]
    args += ["--progress-file", str(tmp_path / "progress")]
    run = cli(*args, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    total = int(run.stdout.split()[0])
    assert total >= 4 and f"done {total}, skipped 0, failed 0" in run.stdout

    source = TileSource(url=document, endpoint="mosaicjson", sr="fast")
    tiles = plan_prewarm(source, "14", bbox)
    assert len(tiles) == total
    with diskcache.Cache(str(tmp_path / "cache")) as disk:
        keys = [parse_key(key) for key in disk.iterkeys()]
    mosaic_hash = dataset_hash(normalize_url(document))
    assert sorted((k.z, k.x, k.y) for k in keys if k and k.dataset == mosaic_hash) == sorted(
        (t.z, t.x, t.y) for t in tiles
    )

    server = live_server(env, app=TEST_APP)
    for tile in tiles:
        response = httpx.get(server + source.path(tile), timeout=120)
        assert response.status_code == 200, response.text
        assert response.headers["x-cache"].startswith("HIT"), tile
        assert response.headers["x-sr-mode"] == "fast"
    north = morecantile.Tile(tiles[0].x, tiles[0].y - 1, 14)  # outside the prewarmed area
    assert httpx.get(server + source.path(north), timeout=120).headers["x-cache"] == "MISS"
    whole = plan_prewarm(source, "14")
    uncovered = next(
        t for t in plan_tiles(WEB_MERCATOR, dataset_bounds(source), [14]) if t not in whole
    )
    assert httpx.get(server + source.path(uncovered), timeout=120).status_code == 204


def test_prewarm_of_a_mosaic_over_http(mosaic_dir: Path, tmp_path: Path, remote_http) -> None:
    """A MosaicJSON at an http:// URL (nginx on 127.0.0.1) naming http:// COGs, written by
    ``mosaic create`` from the URLs: planned from the remote document, every tile computed
    through the allowlist."""
    cogs = f"{remote_http.nginx.url}/cogs"
    for name in ("west.tif", "east.tif"):
        shutil.copy(mosaic_dir / "cogs" / name, remote_http.root / "cogs" / name)
    document = remote_http.root / "cogs" / "area.mosaic.json"
    created = cli("mosaic", "create", str(document), f"{cogs}/west.tif", f"{cogs}/east.tif", env={})
    assert created.returncode == 0, created.stderr
    lon0, lat0, lon1, lat1 = json.loads(document.read_text())["bounds"]
    lon, lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    bbox = f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}"
    env = {
        "HNDSR_DATA_DIR": str(tmp_path / "data"),
        "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
        "HNDSR_ALLOWED_SOURCES": f"{cogs}/",
    }
    args = ["prewarm", f"{cogs}/area.mosaic.json", "--zoom", "14", "--bbox", bbox]
    args += ["--sr", "fast", "--app", TEST_APP, "--progress-file", str(tmp_path / "progress")]
    run = cli(*args, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    total = int(run.stdout.split()[0])
    assert total >= 2 and f"done {total}, skipped 0, failed 0" in run.stdout
    outside = {**env, "HNDSR_ALLOWED_SOURCES": f"{remote_http.nginx.url}/other/"}
    refused = cli(*args, env={**outside, "HNDSR_CACHE_DIR": str(tmp_path / "cache-2")})
    assert (
        refused.returncode == 1 and f"failed {total} (statuses {{403: {total}}})" in refused.stdout
    )


def test_a_busy_answer_is_asked_again_after_its_retry_after() -> None:
    """The render gate answers a burst beyond its threads 503 + Retry-After; a pre-warm
    asks again after that wait instead of counting the tile failed."""
    answers = iter([(503, {"retry-after": "0"}), (503, {"retry-after": "0"}), (200, {})])
    seen: list[str] = []

    async def app(scope, receive, send) -> None:  # a server busy twice, then serving
        status, headers = next(answers)
        seen.append(scope["path"])
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"tile"})

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://prewarm") as client:
            return await get_when_not_busy(client, "/cog/tiles/1/0/0.png")

    response = asyncio.run(run())
    assert response.status_code == 200 and response.content == b"tile"
    assert seen == ["/cog/tiles/1/0/0.png"] * 3
