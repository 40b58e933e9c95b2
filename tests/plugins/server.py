"""Pytest fixtures: real uvicorn servers on 127.0.0.1.

- ``free_port()``: a free TCP port.
- ``live_server``: a factory ``start(env, app=DEFAULT_APP) -> base URL`` starting a uvicorn
  subprocess (``--factory``) with the given ``HNDSR_*`` environment on top of a temporary
  data dir and cache dir; every server it started is stopped (SIGTERM) at teardown.
- ``server_url``: one session-wide server on the sample scene (the embedded default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from training.tilepath.server import free_port, start_uvicorn, stop_process

__all__ = ["ServerPool", "free_port"]
DEFAULT_APP = "tileserver.app:create_app"
START_TIMEOUT_S = 60.0


class ServerPool:
    """Starts uvicorn subprocesses and stops them all on ``close``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []

    def start(
        self,
        env: dict[str, str] | None = None,
        app: str = DEFAULT_APP,
        factory: bool = True,
        ready_path: str = "/healthz",
        timeout_s: float = START_TIMEOUT_S,
    ) -> str:
        """Start ``app`` (a uvicorn factory, or an app object with ``factory=False``) with
        ``env`` and return its base URL once ``ready_path`` answers 200 (benchmarks wait
        for ``/readyz``: the model loaded and warmed)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="server-", dir=self.workdir))
        full_env = {
            **os.environ,
            "HNDSR_DATA_DIR": str(run_dir / "data"),
            "HNDSR_CACHE_DIR": str(run_dir / "cache"),
            **(env or {}),
        }
        log = run_dir / "server.log"
        process, url = start_uvicorn(app, full_env, log, factory, ready_path, timeout_s)
        self.processes.append(process)
        return url

    def close(self) -> None:
        """SIGTERM every server, then kill those still running after 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            stop_process(process)


BURSTS_ADMITTED = {"HNDSR_RENDER_THREADS": "32", "HNDSR_RENDER_QUEUE_WAIT_S": "0"}
"""``live_server``'s defaults under the test's ``env``: tests send bursts (32 tiles at once
to check canary blocks, coalescing, batching) that the render gate's estimate would partly
refuse on a 2-core CI machine (4 threads per CPU; a fresh server refuses what finds no
thread free). The render gate's own tests set both."""


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``start(env=None, app=DEFAULT_APP) -> base URL`` with ``BURSTS_ADMITTED`` under
    ``env``; servers stop at the end of the test."""
    pool = ServerPool(tmp_path)

    def start(env: dict[str, str] | None = None, app: str = DEFAULT_APP, **options: Any) -> str:
        return pool.start({**BURSTS_ADMITTED, **(env or {})}, app, **options)

    yield start
    pool.close()


@pytest.fixture(scope="session")
def server_url(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one session-wide server on the sample scene (default settings)."""
    pool = ServerPool(tmp_path_factory.mktemp("server"))
    yield pool.start({"HNDSR_DATA_DIR": str(sample_scene)})
    pool.close()
