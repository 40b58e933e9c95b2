"""The upscaler contract shared by the tile reader, the SR runtime and the models.

Coordinates: a low-resolution (LR) window of shape (h, w) has pixel edges at integers,
so LR pixel (i, j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5).
An output of shape (H, W) at scale (sx, sy) whose top-left corner sits at ``origin``
(x0, y0) in LR-window coordinates has output pixel (r, c) centred at
``x = x0 + (c + 0.5) / sx`` and ``y = y0 + (r + 0.5) / sy``. Every implementation samples
at exactly these points, which is what makes neighbouring tiles (and a 512-px tile versus
its four 256-px children) agree to the last DN.

``pixel_offsets`` are the absolute (col, row) indices of output pixel (0, 0) in the global
high-resolution grid of the zoom level; coordinate-derived diffusion noise uses them so
that overlapping tiles draw the same noise for the same pixel.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

SR_MODES = ("bicubic", "fast", "diffusion")
DEGRADED_MODE = "degraded-bicubic"
"""The mode a tile reports (``X-SR-Mode``) when a model mode fell back to bicubic under
overload or failure; such tiles are never cached."""


class ModelUnavailableError(RuntimeError):
    """Raised when a model mode is asked for but no usable checkpoint is loaded."""


def normalize_scale(scale: float | tuple[float, float]) -> tuple[float, float]:
    """Return ``(sx, sy)`` from a scalar or a pair, checking 1 < s <= 8 (anisotropic allowed)."""
    sx, sy = (float(scale), float(scale)) if np.isscalar(scale) else map(float, scale)  # type: ignore[arg-type]
    for s in (sx, sy):
        if not (1.0 < s <= 8.0 + 1e-9):
            raise ValueError(f"scale must be in (1, 8], got {s}")
    return sx, sy


def output_shape(lr_shape: tuple[int, int], scale: tuple[float, float]) -> tuple[int, int]:
    """Output (H, W) of the simple form: ``(round(h * sy), round(w * sx))``."""
    h, w = lr_shape
    sx, sy = scale
    return int(round(h * sy)), int(round(w * sx))


def sample_coordinates(
    origins: np.ndarray, scale: tuple[float, float], out_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """LR-window coordinates of every output pixel centre.

    Returns ``(xs, ys)`` of shapes (N, W) and (N, H), float64, for ``origins`` (N, 2).
    """
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 2)
    sx, sy = scale
    height, width = out_shape
    xs = origins[:, :1] + (np.arange(width, dtype=np.float64)[None, :] + 0.5) / sx
    ys = origins[:, 1:2] + (np.arange(height, dtype=np.float64)[None, :] + 0.5) / sy
    return xs, ys


@runtime_checkable
class Upscaler(Protocol):
    """What the server and the runtime need from a super-resolution model."""

    version: str
    """Identifies the weights; goes into ``X-SR-Model`` and the cache key."""
    modes: tuple[str, ...]
    """Modes this upscaler can run (a subset of ``SR_MODES``)."""
    default_mode: str
    """Mode used by ``sr=auto``."""
    halo: int
    """LR pixels of context needed on each side of a tile (receptive field + kernel support)."""

    def upscale(
        self,
        lr: np.ndarray,
        scale: float | tuple[float, float],
        mode: str = "fast",
        seed: int = 0,
    ) -> np.ndarray:
        """Upscale one float32 (C, h, w) image in [0, 1] to (C, round(h*sy), round(w*sx))."""
        ...

    def upscale_batch(
        self,
        lr: np.ndarray,
        scale: tuple[float, float],
        out_shape: tuple[int, int],
        origins: np.ndarray,
        pixel_offsets: np.ndarray | None = None,
        mode: str = "fast",
        seed: int = 0,
    ) -> np.ndarray:
        """Upscale a batch (N, C, h, w) to (N, C, H, W), sampling at the module's coordinates."""
        ...


class BatchUpscaleMixin:
    """The simple ``upscale`` form on top of ``upscale_batch``: one image, zero origin.

    ``mode=None`` means the class's ``default_mode``.
    """

    def upscale(
        self: Upscaler,
        lr: np.ndarray,
        scale: float | tuple[float, float],
        mode: str | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """Upscale one float32 (C, h, w) image in [0, 1] to (C, round(h*sy), round(w*sx))."""
        sxy = normalize_scale(scale)
        shape = output_shape(lr.shape[-2:], sxy)
        mode = self.default_mode if mode is None else mode
        return self.upscale_batch(lr[None], sxy, shape, np.zeros((1, 2)), None, mode, seed)[0]
