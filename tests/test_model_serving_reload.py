"""Hot reload through a real server: ``POST /admin/model/reload`` and SIGHUP.

The server (``tests.apps.versioned_app``) serves ``models:/hndsr@champion`` from a real
MLflow registry; each version is a stand-in model holding 200 MB of ballast, so that the
old model's memory shows in the process RSS until it is freed.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from sr_engine.interface import regular_field
from sr_engine.runtime import SRRuntime, UnknownModel
from tests.apps.http import centre_tiles, tile_path
from tests.apps.model_versions import Registry, stand_in
from tests.apps.polling import wait_until
from tests.apps.upscalers import TestUpscaler
from tests.plugins.server import ServerPool

APP = "tests.apps.versioned_app:create_app"
TOKEN = "reload-secret"
BALLAST_MB = 200
CLIENTS = 4


@dataclass
class Served:
    started: float
    status: int
    model: str | None
    path: str


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ServerPool]:
    servers = ServerPool(tmp_path / "servers")
    yield servers
    servers.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start(pool: ServerPool, registry: Registry, sample_scene: Path, **env: str) -> str:
    return pool.start(
        {
            "HNDSR_MODEL_URI": "models:/hndsr@champion",
            "MLFLOW_TRACKING_URI": registry.uri,
            "HNDSR_DATA_DIR": str(sample_scene),
            "HNDSR_ADMIN_TOKEN": TOKEN,
            **env,
        },
        APP,
        ready_path="/readyz",
    )


def release(registry: Registry, folder: Path, version: str, **card: object) -> None:
    """Register a stand-in ``version`` and make it the champion."""
    registry.alias("champion", registry.register(stand_in(folder, version, **card)))


def served_version(base: str) -> str:
    return httpx.get(f"{base}/readyz", timeout=30).json()["model"]["version"]


class Load:
    """``CLIENTS`` threads requesting distinct cold SR tiles until stopped."""

    def __init__(self, base: str, paths: list[str]) -> None:
        self.base = base
        self.paths = paths
        self.results: list[Served] = []
        self.stop = threading.Event()
        self._next = iter(paths)
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self.stop.is_set():
                with self._lock:
                    path = next(self._next, None)
                if path is None:
                    return
                started = time.monotonic()
                response = client.get(path)
                with self._lock:
                    self.results.append(
                        Served(
                            started, response.status_code, response.headers.get("x-sr-model"), path
                        )
                    )

    def finish(self) -> list[Served]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return self.results


def test_a_reload_under_load_fails_nothing_and_frees_the_old_model(
    pool: ServerPool, tmp_path: Path, sample_scene: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    card = {"test_delay_s": 0.02, "test_ballast_mb": BALLAST_MB}
    release(registry, tmp_path / "v1", "stand-in-1", **card)
    base = start(pool, registry, sample_scene)
    pid = pool.processes[-1].pid
    paths = [tile_path(sample_scene, *t, sr="fast") for t in centre_tiles(15, 160)]
    load = Load(base, paths)
    wait_until(lambda: len(load.results) >= 30, 120, "30 tiles before the reload")
    rss_before = rss_mb(pid)  # warm: GDAL, PNG and the model's buffers under this load

    release(registry, tmp_path / "v2", "stand-in-2", **card)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.post(f"{base}/admin/model/reload", headers=auth, timeout=120)
    switched = time.monotonic()
    done_before = len(load.results)
    wait_until(lambda: len(load.results) >= done_before + 30, 120, "30 tiles after the reload")
    results = load.finish()

    assert answer.status_code == 200, answer.text
    champion = answer.json()["models"]["champion"]
    assert champion == {
        "result": "reloaded",
        "from": "stand-in-1",
        "to": "stand-in-2",
        "old_freed": True,
    }
    assert [r for r in results if r.status != 200] == []
    assert {r.model for r in results if r.started > switched} == {"stand-in-2"}
    assert "stand-in-1" in {r.model for r in results if r.started < switched}
    # the cache key carries the version: a tile stored under version 1 is computed again
    again = httpx.get(base + next(r.path for r in results if r.model == "stand-in-1"), timeout=60)
    assert again.headers["x-sr-model"] == "stand-in-2" and again.headers["x-cache"] == "MISS"
    rss_after = rss_mb(pid)
    models = [r.model for r in results]
    print(
        f"reload under load: {len(results)} tiles, {models.count('stand-in-1')} on v1, "
        f"{models.count('stand-in-2')} on v2; RSS {rss_before:.0f} -> {rss_after:.0f} MiB"
    )
    assert rss_after - rss_before < BALLAST_MB / 2, (rss_before, rss_after)


def test_sighup_reloads_and_an_unchanged_champion_stays(
    pool: ServerPool, tmp_path: Path, sample_scene: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    release(registry, tmp_path / "v1", "stand-in-1")
    base = start(pool, registry, sample_scene)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    same = httpx.post(f"{base}/admin/model/reload", headers=auth, timeout=60).json()
    assert same["models"]["champion"] == {"result": "unchanged", "version": "stand-in-1"}

    release(registry, tmp_path / "v2", "stand-in-2")
    pool.processes[-1].send_signal(signal.SIGHUP)
    wait_until(lambda: served_version(base) == "stand-in-2", 60, "the SIGHUP reload")
    tile = httpx.get(base + tile_path(sample_scene, *centre_tiles(14, 1)[0]), timeout=60)
    assert tile.status_code == 200 and tile.headers["x-sr-model"] == "stand-in-2"


def test_the_reload_route_needs_the_token(
    pool: ServerPool, tmp_path: Path, sample_scene: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    release(registry, tmp_path / "v1", "stand-in-1")
    base = start(pool, registry, sample_scene)
    url = f"{base}/admin/model/reload"
    assert httpx.post(url, timeout=30).status_code == 401
    wrong = httpx.post(url, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert served_version(base) == "stand-in-1"


def test_without_a_token_there_is_no_reload_route(
    pool: ServerPool, tmp_path: Path, sample_scene: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    release(registry, tmp_path / "v1", "stand-in-1")
    base = start(pool, registry, sample_scene, HNDSR_ADMIN_TOKEN="")
    response = httpx.post(f"{base}/admin/model/reload", timeout=30)
    assert response.status_code == 404


def test_jobs_queued_before_a_switch_finish_on_the_old_version() -> None:
    gate = threading.Event()
    old, new = TestUpscaler(gate=gate), TestUpscaler()
    new.version = "test-sr-2"
    runtime = SRRuntime(old, max_batch=2, max_wait_ms=0)
    runtime.start()
    lr = np.full((3, 20, 20), 0.5, np.float32)
    coords = regular_field(np.array([[2.0, 2.0]]), (2.0, 2.0), (32, 32))[0]
    held = runtime.submit(lr, coords)
    wait_until(old.entered.is_set, what="the old model's first call")
    queued = [runtime.submit(lr, coords) for _ in range(3)]  # behind the held batch
    runtime.add_model(new)
    runtime.upscaler = new  # the switch
    runtime.retire_model(old.version)
    after = runtime.submit(lr, coords)
    assert runtime.holds(old.version)  # its jobs are not done
    gate.set()
    for future in [held, *queued, after]:
        future.result(timeout=30)
    assert sum(size for size, _, _ in old.calls) == 4 and new.batch_sizes == [1]
    wait_until(lambda: not runtime.holds(old.version), what="the old version dropped")
    with pytest.raises(UnknownModel):
        runtime.submit(lr, coords, model=old.version)
    runtime.drain()
