"""The real tile server the evaluation scores through: ``uvicorn tileserver.app:create_app``
in a subprocess on a free 127.0.0.1 port, serving one folder with one checkpoint, and a
client for its ``.npy`` tiles (lossless: the raw tile values with the mask as last band).

A subprocess keeps the training package free of imports from the server package. The
process helpers here (``start_uvicorn``, ``wait_until_up``, ``stop_process``) are the ones
the test fixtures and the benchmarks start their servers with (``tests/plugins``).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
BOUND_MESSAGE = b"Uvicorn running on"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    process: subprocess.Popen,
    url: str,
    timeout_s: float,
    log: Path,
    started: Callable[[], bool] = lambda: True,
    accept: Callable[[httpx.Response], bool] = lambda response: True,
) -> None:
    """Poll ``url`` until ``started()`` and an answer that ``accept`` takes; raise with the
    end of ``log`` if the process exits first or ``timeout_s`` passes."""

    def log_end() -> str:
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{log_end()}")
        if started():
            try:
                if accept(httpx.get(url, timeout=5.0)):
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s} s:\n{log_end()}")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 10) -> None:
    """Send ``sig``, then kill the process if it is still running after ``wait_s``."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_uvicorn(
    app: str,
    env: dict[str, str],
    log: Path,
    factory: bool = True,
    ready_path: str = "/healthz",
    timeout_s: float = START_TIMEOUT_S,
) -> tuple[subprocess.Popen, str]:
    """``uvicorn app`` (``--factory`` unless ``factory=False``) from the repository root with
    ``env`` on a free 127.0.0.1 port, output to ``log``; returns the process and its base
    URL once ``ready_path`` answers 200 (the tests, benchmarks and evaluation share it)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, *(["--factory"] if factory else [])]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "info", "--no-access-log"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # our own uvicorn logs that it bound the port: a healthy answer from another
        # process that grabbed the port first must not pass for ours
        wait_until_up(
            process,
            url + ready_path,
            timeout_s,
            log,
            started=lambda: BOUND_MESSAGE in log.read_bytes(),
            accept=lambda response: response.status_code == 200,
        )
    except BaseException:
        stop_process(process)
        raise
    return process, url


@dataclass
class TileArray:
    """One tile as served: values ``(C, H, W)``, validity ``(H, W)`` and the SR headers."""

    values: np.ndarray
    valid: np.ndarray
    sr_mode: str
    sr_model: str


class TileServer:
    """Context manager: a uvicorn server on ``data_dir`` with ``checkpoint``, and its client.

    Only ``data_dir`` may be opened; tiles are never cached across runs (the cache folder is
    fresh), explicit SR modes have no latency budget (a slow machine gets slow tiles, not
    503s), and no Redis tier is used.
    """

    def __init__(self, data_dir: Path, checkpoint: Path, run_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.checkpoint = checkpoint.resolve()
        self.run_dir = run_dir
        self.log_path = run_dir / "server.log"
        self.process: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    def __enter__(self) -> TileServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HNDSR_")}
        env.update(
            HNDSR_DATA_DIR=str(self.data_dir),
            HNDSR_ALLOWED_SOURCES=str(self.data_dir),
            HNDSR_MODEL_PATH=str(self.checkpoint),
            HNDSR_CACHE_DIR=str(self.run_dir / "cache"),
            HNDSR_SR_LATENCY_BUDGET_MS="0",
        )
        self.process, url = start_uvicorn("tileserver.app:create_app", env, self.log_path)
        self.client = httpx.Client(base_url=url, timeout=600.0)
        return self

    @property
    def log(self) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None:
            stop_process(self.process, wait_s=15)

    def get_json(self, path: str, **params: Any) -> Any:
        """GET a JSON document (raises on an error status)."""
        assert self.client is not None
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def native_zoom(self, dataset: Path) -> int:
        """rio-tiler's native zoom of ``dataset`` as the server's catalog reports it."""
        for entry in self.get_json("/catalog"):
            if Path(entry["url"]).resolve() == dataset.resolve():
                return int(entry["native_maxzoom"])
        raise RuntimeError(f"{dataset} is not in the server's catalog:\n{self.log}")

    def model(self) -> dict[str, Any]:
        """The model status the server reports in /readyz."""
        return dict(self.get_json("/readyz")["model"])

    def tile(
        self, dataset: Path, z: int, x: int, y: int, tile_size: int, **params: str
    ) -> TileArray:
        """A WebMercatorQuad tile of ``dataset`` as ``.npy``, with ``params`` (``sr``...)."""
        assert self.client is not None
        response = self.client.get(
            f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.npy",
            params={"url": str(dataset), "tilesize": tile_size, **params},
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"tile {z}/{x}/{y} of {dataset.name} {params}: HTTP {response.status_code} "
                f"{response.text[:500]}"
            )
        array = np.load(io.BytesIO(response.content))
        return TileArray(
            values=array[:-1],
            valid=array[-1] > 0,
            sr_mode=response.headers.get("x-sr-mode", ""),
            sr_model=response.headers.get("x-sr-model", ""),
        )
