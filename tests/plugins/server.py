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
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_APP = "tileserver.app:create_app"
START_TIMEOUT_S = 60.0

BOUND_MESSAGE = b"Uvicorn running on"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        port = free_port()
        run_dir = self.workdir / f"server-{port}"
        run_dir.mkdir(parents=True)
        full_env = {
            **os.environ,
            "HNDSR_DATA_DIR": str(run_dir / "data"),
            "HNDSR_CACHE_DIR": str(run_dir / "cache"),
            **(env or {}),
        }
        log = (run_dir / "server.log").open("wb")
        command = [sys.executable, "-m", "uvicorn", app, *(["--factory"] if factory else [])]
        command += ["--host", "127.0.0.1"]
        command += ["--port", str(port), "--log-level", "info", "--no-access-log"]
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                text = (run_dir / "server.log").read_text(errors="replace")
                raise RuntimeError(f"server exited with {process.returncode}:\n{text[-4000:]}")
            # our own uvicorn logs that it bound the port: a healthy answer from another
            # process that grabbed the port first must not pass for ours
            if BOUND_MESSAGE in (run_dir / "server.log").read_bytes():
                try:
                    if httpx.get(f"{url}{ready_path}", timeout=5.0).status_code == 200:
                        return url
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"server on {url} not ready after {timeout_s} s")

    def close(self) -> None:
        """SIGTERM every server, then kill those still running after 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``start(env=None, app=DEFAULT_APP) -> base URL``; servers stop at the end of the test."""
    pool = ServerPool(tmp_path)
    yield pool.start
    pool.close()


@pytest.fixture(scope="session")
def server_url(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one session-wide server on the sample scene (default settings)."""
    pool = ServerPool(tmp_path_factory.mktemp("server"))
    yield pool.start({"HNDSR_DATA_DIR": str(sample_scene)})
    pool.close()
