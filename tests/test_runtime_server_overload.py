"""Through the real server: overload degrades or refuses at once, faults stay in their batch."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import diskcache
import httpx
import morecantile
import pytest

from tests.apps.http import CENTRE, SCENE, TEST_APP, Knobs, centre_tiles, metric, tile_path
from tests.apps.polling import wait_until
from tests.plugins.remote_http import RemoteHTTP
from tests.plugins.server import ServerPool

INFERENCES = "hndsr_sr_inferences_total"
FAST_TILES = "hndsr_sr_tiles_total"


@pytest.fixture
def start(
    live_server: Callable[..., str], sample_scene: Path, tmp_path: Path
) -> Callable[..., tuple[str, Knobs]]:
    def start_server(**env: str) -> tuple[str, Knobs]:
        knobs = Knobs(tmp_path)
        full_env = {
            "HNDSR_DATA_DIR": str(sample_scene),
            "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
            **knobs.env(),
            **env,
        }
        return live_server(full_env, app=TEST_APP), knobs

    return start_server


async def burst_while_held(
    base: str, knobs: Knobs, held: str, paths: list[str], answered_while_held: int
) -> list[httpx.Response]:
    """Hold the model on one request, send a burst, check how many answer before release."""
    limits = httpx.Limits(max_connections=len(paths) + 2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        before = metric(base, INFERENCES, mode="fast")
        first = asyncio.create_task(client.get(held))
        while metric(base, INFERENCES, mode="fast") == before:
            await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(client.get(p)) for p in paths]
        while sum(t.done() for t in tasks) < answered_while_held:
            await asyncio.sleep(0.05)
        knobs.open_gate()
        responses = await asyncio.gather(first, *tasks)
        return list(responses[1:])


async def fill_a_queue_of_one(
    client: httpx.AsyncClient, base: str, held: str, queued: str
) -> list[asyncio.Task[httpx.Response]]:
    """GET ``held`` until it is in the (gated) model, then ``queued`` until it waits in the
    SR queue; returns both requests in flight."""
    before = metric(base, INFERENCES, mode="fast")
    tasks = [asyncio.create_task(client.get(held))]
    while metric(base, INFERENCES, mode="fast") == before:
        await asyncio.sleep(0.05)
    tasks.append(asyncio.create_task(client.get(queued)))
    while metric(base, "hndsr_sr_queue_depth") < 1:
        await asyncio.sleep(0.05)
    return tasks


def test_a_burst_on_a_full_queue_gets_degraded_tiles_then_the_real_ones(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path, tmp_path: Path
) -> None:
    base, knobs = start(HNDSR_SR_QUEUE_LIMIT="2", HNDSR_SR_MAX_BATCH="1")
    held, *burst = centre_tiles(14, 7)
    paths = [tile_path(sample_scene, *t, sr="auto") for t in burst]
    knobs.close_gate()
    responses = asyncio.run(
        burst_while_held(base, knobs, tile_path(sample_scene, *held, sr="auto"), paths, 4)
    )
    assert [r.status_code for r in responses] == [200] * 6
    modes = [r.headers["x-sr-mode"] for r in responses]
    assert sorted(modes) == ["degraded-bicubic"] * 4 + ["fast"] * 2
    degraded = [
        p for p, r in zip(paths, responses, strict=True) if r.headers["x-sr-mode"] != "fast"
    ]
    for response in responses:
        if response.headers["x-sr-mode"] == "degraded-bicubic":
            assert response.headers["x-sr-model"] == "bicubic-1"
            assert response.headers["cache-control"] == "public, max-age=10"
    assert metric(base, "hndsr_sr_degraded_total") == 4
    # the 4 degraded tiles are recomputed in the background and stored with the other 3
    disk = diskcache.Cache(str(tmp_path / "cache"))
    wait_until(lambda: len(disk) == 7, what="7 stored tiles")
    computed = metric(base, FAST_TILES, mode="fast")
    for path in degraded:
        later = httpx.get(base + path, timeout=60)
        assert later.headers["x-sr-mode"] == "fast"
        assert later.headers["x-cache"].startswith("HIT")
    assert metric(base, FAST_TILES, mode="fast") == computed


def test_a_burst_in_an_explicit_mode_gets_503_with_retry_after(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    base, knobs = start(HNDSR_SR_QUEUE_LIMIT="2", HNDSR_SR_MAX_BATCH="1")
    held, *burst = centre_tiles(14, 7)
    paths = [tile_path(sample_scene, *t, sr="fast") for t in burst]
    knobs.close_gate()
    responses = asyncio.run(
        burst_while_held(base, knobs, tile_path(sample_scene, *held, sr="fast"), paths, 4)
    )
    assert sorted(r.status_code for r in responses) == [200] * 2 + [503] * 4
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert "queue is full" in response.json()["detail"]
    again = [httpx.get(base + p, timeout=60) for p in paths]
    assert [r.headers["x-sr-mode"] for r in again] == ["fast"] * 6


def test_a_failing_batch_fails_only_its_own_requests(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    base, knobs = start(HNDSR_SR_MAX_BATCH="16")
    held, *tiles = centre_tiles(14, 9)
    paths = [tile_path(sample_scene, *t, sr=mode) for mode in ("fast", "diffusion") for t in tiles]
    knobs.close_gate()

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            before = metric(base, INFERENCES, mode="fast")
            first = asyncio.create_task(client.get(tile_path(sample_scene, *held, sr="fast")))
            while metric(base, INFERENCES, mode="fast") == before:
                await asyncio.sleep(0.05)
            tasks = [asyncio.create_task(client.get(p)) for p in paths]
            while metric(base, "hndsr_sr_queue_depth") < 16:
                await asyncio.sleep(0.05)
            knobs.fail_once.touch()  # the next batch (8 fast or 8 diffusion tiles) raises
            knobs.open_gate()
            return list(await asyncio.gather(first, *tasks))

    held_response, *responses = asyncio.run(run())
    assert held_response.status_code == 200
    failed = [p for p, r in zip(paths, responses, strict=True) if r.status_code != 200]
    assert len(failed) == 8
    assert len({p.rsplit("sr=", 1)[1] for p in failed}) == 1  # one batch: one mode
    for path, response in zip(paths, responses, strict=True):
        if path in failed:
            assert response.status_code == 503 and "model failed" in response.json()["detail"]
    assert [httpx.get(base + p, timeout=60).status_code for p in failed] == [200] * 8


def test_sigterm_finishes_the_batches_in_flight(sample_scene: Path, tmp_path: Path) -> None:
    knobs = Knobs(tmp_path)
    pool = ServerPool(tmp_path)
    env = {"HNDSR_DATA_DIR": str(sample_scene), "HNDSR_SR_MAX_BATCH": "1", **knobs.env()}
    base = pool.start(env, app=TEST_APP)
    server: subprocess.Popen = pool.processes[-1]
    paths = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(14, 3)]
    knobs.close_gate()
    try:

        async def run() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=120) as client:
                tasks = [asyncio.create_task(client.get(p)) for p in paths]
                while metric(base, "hndsr_sr_queue_depth") < 2:  # 1 in the model, 2 queued
                    await asyncio.sleep(0.05)
                server.send_signal(signal.SIGTERM)
                while True:  # the server stops accepting connections
                    try:
                        httpx.get(base + "/healthz", timeout=1)
                    except httpx.TransportError:
                        break
                    await asyncio.sleep(0.05)
                knobs.open_gate()
                return list(await asyncio.gather(*tasks))

        responses = asyncio.run(run())
        assert [r.status_code for r in responses] == [200] * 3
        assert {r.headers["x-sr-mode"] for r in responses} == {"fast"}
        # uvicorn re-raises SIGTERM once its graceful shutdown is done
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        knobs.open_gate()
        pool.close()


def test_a_request_that_would_wait_too_long_for_a_render_thread_gets_503_at_once(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    base, _ = start(
        HNDSR_RENDER_THREADS="2",
        HNDSR_RENDER_QUEUE_WAIT_S="1",
        HNDSR_SR_MAX_BATCH="1",
        HNDSR_SR_LATENCY_BUDGET_MS="0",  # only the render gate refuses
        HNDSR_TEST_DELAY_S="1",
    )
    warm, burst, after = centre_tiles(14, 2), centre_tiles(14, 10, skip=2), centre_tiles(14, 1, 12)
    for tile in warm:  # the gate learns that a cold SR tile takes about a second of its time
        assert httpx.get(base + tile_path(sample_scene, *tile, sr="fast"), timeout=60).is_success

    async def timed(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
        started = asyncio.get_running_loop().time()
        response = await client.get(path)
        return response, asyncio.get_running_loop().time() - started

    async def run() -> list[tuple[httpx.Response, float]]:
        limits = httpx.Limits(max_connections=len(burst))
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            paths = [tile_path(sample_scene, *t, sr="fast") for t in burst]
            return list(await asyncio.gather(*(timed(client, p) for p in paths)))

    answers = asyncio.run(run())
    served = [elapsed for response, elapsed in answers if response.status_code == 200]
    refused = [(response, elapsed) for response, elapsed in answers if response.status_code == 503]
    assert len(served) + len(refused) == len(burst)
    assert len(served) >= 2 and len(refused) >= 5  # 2 threads, about 2 waiting within 1 s
    for response, _ in refused:
        assert "rendering are expected to take" in response.json()["detail"]
        assert int(response.headers["retry-after"]) >= 1
    assert max(elapsed for _, elapsed in refused) < min(served)  # before any render finished
    # once the burst has drained, a request finds a thread free and is always admitted
    assert httpx.get(base + tile_path(sample_scene, *after[0], sr="fast"), timeout=60).is_success


def test_sr_tiles_waiting_for_their_batch_hold_no_render_thread(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    base, knobs = start(
        HNDSR_RENDER_THREADS="2", HNDSR_RENDER_QUEUE_WAIT_S="0", HNDSR_SR_MAX_BATCH="1"
    )
    paths = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(14, 6)]
    knobs.close_gate()

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            tasks = [asyncio.create_task(client.get(p)) for p in paths]
            # 1 in the model and 5 queued: 6 tiles reached the runtime through 2 render threads
            deadline = asyncio.get_running_loop().time() + 60
            while metric(base, "hndsr_sr_queue_depth") < 5:
                assert asyncio.get_running_loop().time() < deadline, "5 SR jobs never queued"
                await asyncio.sleep(0.05)
            knobs.open_gate()
            return list(await asyncio.gather(*tasks))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.headers["x-sr-mode"] for r in responses} == {"fast"}


def test_an_explicit_mode_refused_by_the_runtime_reads_none_of_its_window(
    live_server: Callable[..., str],
    sample_scene: Path,
    remote_http: RemoteHTTP,
    tmp_path: Path,
) -> None:
    """The runtime's admission is asked before the window is read: an overloaded server
    spends no read (here: no range request to nginx) on a tile it refuses. ``auto`` under
    the same overload reads its window (for the bicubic answer): the control."""
    scene = remote_http.root / "cogs" / "overload" / "scene.tif"
    scene.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample_scene / SCENE, scene)
    knobs = Knobs(tmp_path)
    env = {
        "HNDSR_DATA_DIR": str(sample_scene),
        "HNDSR_ALLOWED_SOURCES": f"{sample_scene},{remote_http.nginx.url}/cogs/",
        "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
        "HNDSR_SR_QUEUE_LIMIT": "1",
        "HNDSR_SR_MAX_BATCH": "1",
        **knobs.env(),
    }
    base = live_server(env, app=TEST_APP)
    url = f"{remote_http.nginx.url}/cogs/overload/scene.tif"
    centre = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, 14)

    def path(dx: int, dy: int, sr: str) -> str:
        return (
            f"/cog/tiles/WebMercatorQuad/14/{centre.x + dx}/{centre.y + dy}.png?url={url}&sr={sr}"
        )

    def window_reads() -> int:  # GDAL's range reads (the allowlist's lookups fetch 1 byte)
        return sum(
            int(line.split('" ', 1)[1].split()[1]) > 1
            for line in remote_http.nginx.log_lines("GET /cogs/overload/scene.tif")
        )

    async def run() -> tuple[int, httpx.Response, int, httpx.Response]:
        limits = httpx.Limits(max_connections=6)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            tasks = await fill_a_queue_of_one(client, base, path(0, 0, "fast"), path(1, 0, "fast"))
            reads = window_reads()
            refused = await client.get(path(-12, -12, "fast"))
            after_refused = window_reads()
            degraded = await client.get(path(12, 12, "auto"))
            after_degraded = window_reads()
            knobs.open_gate()
            await asyncio.gather(*tasks)
            return after_refused - reads, refused, after_degraded - after_refused, degraded

    knobs.close_gate()
    try:
        refused_reads, refused, degraded_reads, degraded = asyncio.run(run())
    finally:
        knobs.open_gate()
    assert refused.status_code == 503, refused.text
    assert "queue is full" in refused.json()["detail"]
    assert refused_reads == 0
    assert degraded.headers["x-sr-mode"] == "degraded-bicubic"
    assert degraded_reads > 0


def slow_reads(remote_http: RemoteHTTP) -> int:
    """GDAL's requests to the shared slow remote so far (the server's lookup asks for
    bytes=0-0)."""
    return sum(not r.endswith("bytes=0-0") for r in remote_http.slow.requests)


def test_an_explicit_mode_is_refused_before_it_waits_for_a_render_thread(
    live_server: Callable[..., str], sample_scene: Path, remote_http: RemoteHTTP, tmp_path: Path
) -> None:
    """Once a dataset's first SR zoom is known, a cold ``sr=fast`` tile that the SR
    runtime would refuse gets its 503 at once, even while the one render thread is held by
    a slow remote read (6 s): it waits for no thread and opens nothing."""
    knobs = Knobs(tmp_path)
    slow = f"{remote_http.slow.url}/get/scene.tif"  # the lookup answers, GDAL's reads wait
    env = {
        **knobs.env(),
        "HNDSR_DATA_DIR": str(sample_scene),
        "HNDSR_ALLOWED_SOURCES": f"{sample_scene},{remote_http.slow.url}/get/",
        "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
        "HNDSR_RENDER_THREADS": "1",
        "HNDSR_RENDER_QUEUE_WAIT_S": "0",  # only the SR runtime refuses
        "HNDSR_SR_QUEUE_LIMIT": "1",
        "HNDSR_SR_MAX_BATCH": "1",
        "HNDSR_REMOTE_TIMEOUT_S": "10",
        "HNDSR_REMOTE_MAX_RETRY": "0",
    }
    base = live_server(env, app=TEST_APP)
    first, held, queued, refused = centre_tiles(14, 4)
    assert httpx.get(base + tile_path(sample_scene, *first, sr="fast"), timeout=60).is_success

    async def run() -> tuple[httpx.Response, float]:
        limits = httpx.Limits(max_connections=6)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            tasks = await fill_a_queue_of_one(
                client,
                base,
                tile_path(sample_scene, *held, sr="fast"),
                tile_path(sample_scene, *queued, sr="fast"),
            )
            slow_path = f"/cog/tiles/WebMercatorQuad/14/{first[1]}/{first[2]}.png?url={slow}"
            before = slow_reads(remote_http)  # the slow server is shared by the session's tests
            tasks.append(asyncio.create_task(client.get(slow_path)))
            while slow_reads(remote_http) == before:  # the thread is in GDAL's read
                await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            response = await client.get(tile_path(sample_scene, *refused, sr="fast"))
            elapsed = asyncio.get_running_loop().time() - started
            knobs.open_gate()
            await asyncio.gather(*tasks)
            return response, elapsed

    knobs.close_gate()
    try:
        response, elapsed = asyncio.run(run())
    finally:
        knobs.open_gate()
    print(f"refused in {elapsed:.2f} s while the render thread read a slow remote")
    assert response.status_code == 503, response.text
    assert "queue is full" in response.json()["detail"]
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < 1.0


def test_a_new_server_refuses_what_finds_no_render_thread_free(
    live_server: Callable[..., str], sample_scene: Path, remote_http: RemoteHTTP, tmp_path: Path
) -> None:
    """Before any dataset request has finished, the render gate cannot tell how long the
    requests in flight will take: with its one render thread held by a slow remote read
    (6 s), a second request gets 503 at once instead of queueing; once a request has
    finished, the next one is served."""
    env = {
        "HNDSR_DATA_DIR": str(sample_scene),
        "HNDSR_ALLOWED_SOURCES": f"{sample_scene},{remote_http.slow.url}/get/",
        "HNDSR_CACHE_DIR": str(tmp_path / "cache"),
        "HNDSR_RENDER_THREADS": "1",
        "HNDSR_RENDER_QUEUE_WAIT_S": "2",
        "HNDSR_REMOTE_TIMEOUT_S": "10",
        "HNDSR_REMOTE_MAX_RETRY": "0",
    }
    base = live_server(env, app=TEST_APP)
    first, second = centre_tiles(14, 2)
    slow = f"/cog/tiles/WebMercatorQuad/14/{first[1]}/{first[2]}.png?url="
    slow += f"{remote_http.slow.url}/get/scene.tif&sr=off"
    local = tile_path(sample_scene, *second, sr="off")

    async def run() -> tuple[httpx.Response, float]:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            before = slow_reads(remote_http)  # the slow server is shared by the session's tests
            held = asyncio.create_task(client.get(slow))
            while slow_reads(remote_http) == before:  # the thread is in GDAL's read
                await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            response = await client.get(local)
            elapsed = asyncio.get_running_loop().time() - started
            await held
            return response, elapsed

    response, elapsed = asyncio.run(run())
    print(f"refused in {elapsed:.2f} s while the only render thread read a slow remote")
    assert response.status_code == 503, response.text
    assert "no request has finished yet" in response.json()["detail"]
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < 1.0
    assert httpx.get(base + local, timeout=60).status_code == 200


def test_auto_refused_on_arrival_degrades_without_asking_again(
    start: Callable[..., tuple[str, Knobs]], sample_scene: Path
) -> None:
    """Once the dataset's SR zoom is known, an ``sr=auto`` tile asks the runtime on
    arrival: refused there (the queue's one place is taken by a queued job), it gets no
    503 from the early admission but a bicubic answer, counted as degraded."""
    base, knobs = start(HNDSR_SR_QUEUE_LIMIT="1", HNDSR_SR_MAX_BATCH="1")
    known, held, queued, refused = centre_tiles(14, 4)
    assert httpx.get(base + tile_path(sample_scene, *known, sr="fast"), timeout=60).is_success

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            tasks = await fill_a_queue_of_one(
                client,
                base,
                tile_path(sample_scene, *held, sr="fast"),
                tile_path(sample_scene, *queued, sr="fast"),
            )
            response = await client.get(tile_path(sample_scene, *refused, sr="auto"))
            knobs.open_gate()
            await asyncio.gather(*tasks)
            return response

    knobs.close_gate()
    try:
        response = asyncio.run(run())
    finally:
        knobs.open_gate()
    assert response.status_code == 200
    assert response.headers["x-sr-mode"] == "degraded-bicubic"
    assert metric(base, "hndsr_sr_degraded_total") == 1
