"""The one place the reader calls to super-resolve a tile.

For now a direct, synchronous call into ``sr_engine``: the bicubic baseline always, and the
HNDSR model for ``fast``/``diffusion`` once ``sr_engine.load_model()`` succeeds. The batching
runtime replaces these internals behind the same small interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sr_engine import BicubicUpscaler, ModelUnavailableError, Upscaler, load_model
from sr_engine.metrics import MODEL_INFO, MODEL_LOADED, SR_INFERENCES, SR_TILES
from tileserver.settings import Settings

MODEL_MODES = ("fast", "diffusion")


@dataclass(frozen=True)
class ResolvedMode:
    """The mode a request will run and the LR halo (pixels each side) it needs."""

    mode: str
    halo: int


class SRBackend:
    """Upscales single tiles with the bicubic baseline or the loaded model."""

    def __init__(self, settings: Settings, model: Upscaler | None = None) -> None:
        self.bicubic = BicubicUpscaler()
        self.model: Upscaler | None = model
        self.model_error: str | None = None
        if self.model is None:
            try:
                self.model = load_model(settings.model_path, device=settings.device)
            except ModelUnavailableError as exc:
                self.model_error = str(exc)
        MODEL_LOADED.set(1 if self.model is not None else 0)
        if self.model is not None:
            MODEL_INFO.labels(self.model.version, self.model.default_mode, settings.device).set(1)

    def resolve(self, requested: str) -> ResolvedMode:
        """Map ``auto|bicubic|fast|diffusion`` to a runnable mode; 503-worthy if unavailable."""
        if requested == "auto":
            requested = self.model.default_mode if self.model is not None else "bicubic"
        if requested == "bicubic":
            return ResolvedMode("bicubic", self.bicubic.halo)
        if self.model is None or requested not in self.model.modes:
            raise ModelUnavailableError(self.model_error or f"mode {requested!r} is not loaded")
        return ResolvedMode(requested, self.model.halo)

    def upscale_tile(
        self,
        lr: np.ndarray,
        scale: tuple[float, float],
        out_shape: tuple[int, int],
        origin: tuple[float, float],
        pixel_offset: tuple[int, int],
        mode: str,
    ) -> tuple[np.ndarray, str, str]:
        """Upscale one float32 (C, h, w) LR window in [0, 1]; see ``sr_engine.interface``.

        Returns ``(hr (C, H, W) float32, applied mode, model version)``.
        """
        upscaler: Upscaler = self.bicubic if mode == "bicubic" else self._model(mode)
        hr = upscaler.upscale_batch(
            lr[None],
            scale,
            out_shape,
            np.asarray([origin], dtype=np.float64),
            pixel_offsets=np.asarray([pixel_offset], dtype=np.int64),
            mode=mode,
        )[0]
        SR_INFERENCES.labels(mode).inc()
        SR_TILES.labels(mode).inc()
        return hr, mode, upscaler.version

    def _model(self, mode: str) -> Upscaler:
        if self.model is None or mode not in self.model.modes:
            raise ModelUnavailableError(self.model_error or f"mode {mode!r} is not loaded")
        return self.model

    def model_status(self) -> dict[str, Any]:
        """Loaded model (version, modes) or why none is; used by /readyz."""
        if self.model is None:
            return {"loaded": False, "error": self.model_error}
        return {"loaded": True, "version": self.model.version, "modes": list(self.model.modes)}
