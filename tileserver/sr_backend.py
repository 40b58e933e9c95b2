"""The one place the reader calls to super-resolve a tile.

``bicubic`` runs at once in the caller's thread. Model modes go through the SR runtime
(micro-batching on an inference thread); identical jobs in flight are computed once. When
the runtime is overloaded or a batch fails, ``auto`` answers with a bicubic tile
(``degraded-bicubic``: never cached; the cache recomputes it as a background job) and an
explicit mode raises a ``ModelUnavailableError`` (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI

from cache import BACKGROUND_RECOMPUTE, SingleFlight
from sr_engine import DEGRADED_MODE, BicubicUpscaler, ModelUnavailableError, Upscaler, load_model
from sr_engine.device import device_config
from sr_engine.metrics import (
    MODEL_INFO,
    MODEL_LOADED,
    SR_COALESCED,
    SR_DEGRADED,
    SR_INFERENCES,
    SR_TILES,
)
from sr_engine.runtime import Overloaded, SRRuntime
from tileserver.settings import Settings

log = logging.getLogger(__name__)

BACKGROUND_LIMIT = 16
"""Most queued background recomputations; each holds a threadpool thread (40 by default),
so this leaves most of the pool to foreground requests. A recompute refused here is simply
not stored; the next request for that tile computes it."""
DRAIN_TIMEOUT_S = 60.0
"""Longest wait for queued batches at shutdown."""


class SRInferenceError(ModelUnavailableError):
    """The model call of this tile's batch failed (other batches are unaffected)."""

    retry_after = 5.0


@dataclass(frozen=True)
class ResolvedMode:
    """What a request will run and the LR halo (pixels each side) its window needs.

    ``mode`` is ``bicubic``, a model mode, or ``auto`` (the model's default mode, which may
    degrade to bicubic under overload); ``upscale_tile`` returns the mode it applied.
    """

    mode: str
    halo: int


def job_key(
    lr: np.ndarray,
    coords: np.ndarray,
    pixel_offset: tuple[int, int],
    mode: str,
    version: str,
) -> str:
    """Content key of one SR job: equal keys give equal pixels."""
    digest = hashlib.blake2b(np.ascontiguousarray(lr).tobytes(), digest_size=20)
    digest.update(np.ascontiguousarray(coords, dtype=np.float64).tobytes())
    params = (lr.shape, str(lr.dtype), coords.shape, pixel_offset, mode, version)
    digest.update(repr(params).encode())
    return digest.hexdigest()


class SRBackend:
    """Upscales single tiles with the bicubic baseline, or the model through the SR runtime."""

    def __init__(
        self,
        settings: Settings,
        model: Upscaler | None = None,
    ) -> None:
        self.bicubic = BicubicUpscaler()
        self.device = device_config(settings.device)
        self.model: Upscaler | None = model
        self.model_error: str | None = None
        if self.model is None:
            try:
                self.model = load_model(settings.model_path, device=self.device.name)
            except ModelUnavailableError as exc:
                self.model_error = str(exc)
        self.runtime: SRRuntime | None = None
        if self.model is not None:
            self.runtime = SRRuntime(
                self.model,
                max_batch=settings.sr_max_batch,
                max_wait_ms=settings.sr_max_wait_ms,
                queue_limit=settings.sr_queue_limit,
                latency_budget_s=settings.sr_latency_budget_ms / 1000 or None,
                background_limit=BACKGROUND_LIMIT,
                device=self.device,
            )
            MODEL_INFO.labels(self.model.version, self.model.default_mode, self.device.name).set(1)
        MODEL_LOADED.set(1 if self.model is not None else 0)
        self.flights: SingleFlight[tuple[str, bool], np.ndarray] = SingleFlight()

    def start(self) -> None:
        """Start the runtime and warm the model (blocks; run before reporting ready).

        A warm-up failure is logged, not fatal: ``auto`` degrades per batch and bicubic works.
        """
        if self.runtime is None:
            return
        try:
            self.runtime.warm_up()
        except Exception:
            log.exception("SR model warm-up failed")

    def drain(self, timeout: float | None = DRAIN_TIMEOUT_S) -> bool:
        """Finish the queued and running batches, then stop the runtime."""
        return self.runtime is None or self.runtime.drain(timeout)

    def resolve(self, requested: str) -> ResolvedMode:
        """Check that ``auto|bicubic|fast|diffusion`` can run; ``ModelUnavailableError`` if not."""
        if requested == "bicubic" or (requested == "auto" and self.model is None):
            return ResolvedMode("bicubic", self.bicubic.halo)
        if self.model is None or (requested != "auto" and requested not in self.model.modes):
            raise ModelUnavailableError(self.model_error or f"mode {requested!r} is not loaded")
        return ResolvedMode(requested, self.model.halo)

    def upscale_tile(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        pixel_offset: tuple[int, int],
        mode: str,
    ) -> tuple[np.ndarray, str, str]:
        """Upscale one float32 (C, h, w) LR window in [0, 1] at ``coords`` (H, W, 2); see
        ``sr_engine.interface``.

        ``mode`` comes from ``resolve``. Returns ``(hr (C, H, W) float32, applied mode,
        model version)``; the applied mode is ``degraded-bicubic`` when ``auto`` fell back.
        """
        if mode == "bicubic" or (mode == "auto" and self.runtime is None):
            hr = self.bicubic_tile(lr, coords)
            SR_INFERENCES.labels("bicubic").inc()
            SR_TILES.labels("bicubic").inc()
            return hr, "bicubic", self.bicubic.version
        runtime = self.runtime
        if runtime is None or (mode != "auto" and mode not in runtime.upscaler.modes):
            raise ModelUnavailableError(self.model_error or f"mode {mode!r} is not loaded")
        run_mode = runtime.upscaler.default_mode if mode == "auto" else mode
        background = BACKGROUND_RECOMPUTE.get()
        version = runtime.upscaler.version
        key = (job_key(lr, coords, pixel_offset, run_mode, version), background)

        def compute() -> np.ndarray:
            runtime.start()  # no-op once started; covers apps run without their lifespan
            future = runtime.submit(lr, coords, None, pixel_offset, run_mode, background=background)
            return future.result()

        try:
            hr, shared = self.flights.run(key, compute)
        except Overloaded:
            if mode != "auto":
                raise
            return self._degraded(lr, coords)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            if mode != "auto":
                raise SRInferenceError(f"the {run_mode} model failed on this tile") from exc
            return self._degraded(lr, coords)
        if shared:
            SR_COALESCED.inc()
        return hr, run_mode, version

    def bicubic_tile(self, lr: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Bicubic sampling of one (C, h, w) window at ``coords`` (H, W, 2), at once in this
        thread (no metrics)."""
        return self.bicubic.upscale_batch(lr[None], coords[None])[0]

    def _degraded(self, lr: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, str, str]:
        SR_DEGRADED.inc()
        return self.bicubic_tile(lr, coords), DEGRADED_MODE, self.bicubic.version

    def model_status(self) -> dict[str, Any]:
        """Loaded model (version, modes, device, queue) or why none is; used by /readyz."""
        if self.model is None or self.runtime is None:
            return {"loaded": False, "error": self.model_error}
        return {
            "loaded": True,
            "version": self.model.version,
            "modes": list(self.model.modes),
            "device": self.device.name,
            "queue_depth": self.runtime.pending,
        }


@asynccontextmanager
async def sr_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """App lifespan: warm the model before serving (and /readyz); drain batches at shutdown."""
    backend: SRBackend = app.state.sr_config.backend
    await asyncio.to_thread(backend.start)
    try:
        yield
    finally:
        drained = await asyncio.to_thread(backend.drain)
        if not drained:
            log.warning("SR batches were still running after %ss at shutdown", DRAIN_TIMEOUT_S)
