"""The real app with a test upscaler, for runtime tests through a real uvicorn server.

``uvicorn --factory tests.apps.server_app:create_app``. The upscaler is the bicubic
baseline presented as a model (modes fast/diffusion); test-only environment knobs:

- ``HNDSR_TEST_GATE=<path>``: model calls block while the file exists;
- ``HNDSR_TEST_DELAY_S=<seconds>``: every model call takes at least this long;
- ``HNDSR_TEST_FAIL=<path>``: model calls raise while the file exists;
- ``HNDSR_TEST_FAIL_ONCE=<path>``: the first model call that finds the file consumes it and raises.

It also exports ``hndsr_test_tile_requests_in_progress`` on ``/metrics``, so that a test
knows when all of its concurrent requests have reached the server.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.apps.upscalers import FileFault, FileGate, TestUpscaler
from tileserver.app import create_app as create_real_app

TILE_REQUESTS_IN_PROGRESS = Gauge(
    "hndsr_test_tile_requests_in_progress", "Tile requests the server is answering."
)


class InProgressMiddleware:
    """Outermost middleware: counts the tile requests in progress."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/tiles/" not in scope["path"]:
            await self.app(scope, receive, send)
            return
        with TILE_REQUESTS_IN_PROGRESS.track_inprogress():
            await self.app(scope, receive, send)


def create_app() -> FastAPI:
    """The app of ``tileserver.app`` with a ``TestUpscaler`` configured from the environment."""
    env = os.environ
    faults = [FileFault(Path(env["HNDSR_TEST_FAIL"]))] if "HNDSR_TEST_FAIL" in env else []
    if "HNDSR_TEST_FAIL_ONCE" in env:
        faults.append(FileFault(Path(env["HNDSR_TEST_FAIL_ONCE"]), once=True))
    upscaler = TestUpscaler(
        gate=FileGate(Path(env["HNDSR_TEST_GATE"])) if "HNDSR_TEST_GATE" in env else None,
        delay_s=float(env.get("HNDSR_TEST_DELAY_S", "0")),
        fail_when=(lambda lr: any(fault(lr) for fault in faults)) if faults else None,
    )
    app = create_real_app(upscaler=upscaler)
    app.add_middleware(InProgressMiddleware)
    return app
