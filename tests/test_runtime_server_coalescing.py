"""Through the real server: identical concurrent cold requests run the model once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.apps.http import TEST_APP, Knobs, centre_tiles, metric, tile_path
from tests.apps.polling import wait_until

IN_PROGRESS = "hndsr_test_tile_requests_in_progress"
INFERENCES = "hndsr_sr_inferences_total"


@pytest.fixture
def server(
    live_server: Callable[..., str], sample_scene: Path, tmp_path: Path
) -> tuple[str, Knobs]:
    knobs = Knobs(tmp_path)
    base = live_server({"HNDSR_DATA_DIR": str(sample_scene), **knobs.env()}, app=TEST_APP)
    return base, knobs


async def gather_when_all_arrived(
    base: str, path: str, count: int, knobs: Knobs, arrived: int | None = None
) -> list[httpx.Response]:
    """Send ``count`` identical requests, open the gate once ``arrived`` are at the server."""
    limits = httpx.Limits(max_connections=count + 1)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(client.get(path)) for _ in range(count)]
        while metric(base, IN_PROGRESS) < (arrived or count):
            await asyncio.sleep(0.05)
        knobs.open_gate()
        return list(await asyncio.gather(*tasks))


def test_fifty_identical_cold_requests_make_one_model_call(
    server: tuple[str, Knobs], sample_scene: Path
) -> None:
    base, knobs = server
    path = tile_path(sample_scene, *centre_tiles(14, 1)[0], sr="fast")
    before = metric(base, INFERENCES, mode="fast")
    knobs.close_gate()
    responses = asyncio.run(gather_when_all_arrived(base, path, 50, knobs))
    assert [r.status_code for r in responses] == [200] * 50
    assert len({r.content for r in responses}) == 1
    assert metric(base, INFERENCES, mode="fast") - before == 1
    assert sorted(r.headers["x-cache"] for r in responses) == ["COALESCED"] * 49 + ["MISS"]
    assert {r.headers["x-sr-mode"] for r in responses} == {"fast"}


def test_the_first_client_disconnecting_does_not_cancel_the_others(
    server: tuple[str, Knobs], sample_scene: Path
) -> None:
    base, knobs = server
    path = tile_path(sample_scene, *centre_tiles(14, 1)[0], sr="fast")
    before = metric(base, INFERENCES, mode="fast")
    knobs.close_gate()
    host, port = urlsplit(base).hostname, urlsplit(base).port
    first = socket.create_connection((host, port))
    first.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    wait_until(lambda: metric(base, INFERENCES, mode="fast") - before == 1, what="the model call")

    async def others() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            tasks = [asyncio.create_task(client.get(path)) for _ in range(49)]
            while metric(base, IN_PROGRESS) < 50:
                await asyncio.sleep(0.05)
            first.close()  # the leader's client goes away mid-computation
            knobs.open_gate()
            return list(await asyncio.gather(*tasks))

    responses = asyncio.run(others())
    assert [r.status_code for r in responses] == [200] * 49
    assert len({r.content for r in responses}) == 1
    assert metric(base, INFERENCES, mode="fast") - before == 1
    again = httpx.get(base + path, timeout=60)
    assert again.headers["x-cache"].startswith("HIT") and again.content == responses[0].content


def test_a_raising_model_gives_every_waiter_a_clean_error(
    server: tuple[str, Knobs], sample_scene: Path
) -> None:
    base, knobs = server
    path = tile_path(sample_scene, *centre_tiles(14, 1)[0], sr="fast")
    before = metric(base, INFERENCES, mode="fast")
    knobs.fail.touch()
    knobs.close_gate()
    responses = asyncio.run(gather_when_all_arrived(base, path, 50, knobs))
    assert [r.status_code for r in responses] == [503] * 50
    assert all("Retry-After" in r.headers for r in responses)
    assert all("model failed" in r.json()["detail"] for r in responses)
    assert metric(base, INFERENCES, mode="fast") - before == 1
    knobs.fail.unlink()
    assert httpx.get(base + path, timeout=60).status_code == 200  # nothing was cached or broken
