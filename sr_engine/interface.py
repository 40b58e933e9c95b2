"""The upscaler contract shared by the tile reader, the SR runtime and the models.

Coordinates: a low-resolution (LR) window of shape (h, w) has pixel edges at integers,
so LR pixel (i, j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5).
An upscaler samples the window at a **coordinate field** ``coords`` (N, H, W, 2) float64:
``coords[n, r, c] = (x, y)`` is where output pixel (r, c) of item n is centred, in LR-window
pixel coordinates. The reader builds it by mapping every tile pixel centre into the
source's own pixel grid (any CRS, any TMS), so the model's interpolation is the only
resampling. ``cell`` (N, H, W, 2) is the local footprint (dx, dy) of one output pixel in LR
pixels; by default it comes from the field's local Jacobian (``field_cell``).

``regular_field`` builds the field of a regular grid: an output of shape (H, W) at scale
(sx, sy) whose top-left corner sits at ``origin`` (x0, y0) has pixel (r, c) at
``x = x0 + (c + 0.5) / sx``, ``y = y0 + (r + 0.5) / sy`` (training and ``upscale`` use it).
Every implementation samples at exactly the given points, which is what makes neighbouring
tiles (and a 512-px tile versus its four 256-px children) agree to the last DN.

``pixel_offsets`` are the absolute (col, row) indices of output pixel (0, 0) in the global
high-resolution grid of the zoom level; coordinate-derived diffusion noise uses them so
that overlapping tiles draw the same noise for the same pixel.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from sr_engine.modes import FAST


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


def regular_field(
    origins: np.ndarray, scale: tuple[float, float], out_shape: tuple[int, int]
) -> np.ndarray:
    """The coordinate field (N, H, W, 2) float64 of a regular grid (see the module doc)."""
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 2)
    sx, sy = scale
    height, width = out_shape
    xs = origins[:, :1] + (np.arange(width, dtype=np.float64)[None, :] + 0.5) / sx
    ys = origins[:, 1:2] + (np.arange(height, dtype=np.float64)[None, :] + 0.5) / sy
    field = np.empty((len(origins), height, width, 2), dtype=np.float64)
    field[..., 0] = xs[:, None, :]
    field[..., 1] = ys[:, :, None]
    return field


def field_cell(coords: np.ndarray) -> np.ndarray:
    """Local footprint (dx, dy) (N, H, W, 2) of each output pixel, in LR pixels.

    ``dx`` is the length of the field's step along an output row, ``dy`` along a column
    (central differences, one-sided at the edges: exact for affine fields). A regular grid
    at scale (sx, sy) gives (1/sx, 1/sy) everywhere; a rotated one keeps the lengths.
    """
    coords = np.asarray(coords, dtype=np.float64)
    steps = []
    for axis in (2, 1):  # along columns -> dx, along rows -> dy
        if coords.shape[axis] > 1:
            steps.append(np.linalg.norm(np.gradient(coords, axis=axis), axis=-1))
        else:
            steps.append(None)
    dx, dy = steps
    dx = dy if dx is None else dx
    dy = dx if dy is None else dy
    if dx is None or dy is None:
        raise ValueError("a 1x1 coordinate field has no cell size; pass cell explicitly")
    return np.stack([dx, dy], axis=-1)


def extend_field(coords: np.ndarray, margin: int) -> np.ndarray:
    """The field grown by ``margin`` pixels on every side (N, H+2m, W+2m, 2).

    Extrapolates linearly with the gradient at each edge: exact for affine fields, and for
    a smooth reprojection off by the field's curvature over ``margin`` pixels.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if margin <= 0:
        return coords
    for axis in (2, 1):
        size = coords.shape[axis]
        if size < 2:
            raise ValueError("extending a field needs at least 2 pixels along each axis")
        first = np.take(coords, [0], axis=axis)
        last = np.take(coords, [size - 1], axis=axis)
        step_first = np.take(coords, [1], axis=axis) - first
        step_last = last - np.take(coords, [size - 2], axis=axis)
        k = np.arange(1, margin + 1, dtype=np.float64)
        shape = [1] * coords.ndim
        shape[axis] = margin
        k = k.reshape(shape)
        before = first - np.flip(k, axis=axis) * step_first
        after = last + k * step_last
        coords = np.concatenate([before, coords, after], axis=axis)
    return coords


def field_scale(cell: np.ndarray) -> tuple[float, float]:
    """Nominal scale (sx, sy) of one item's cell field: 1 / the mean footprint per axis."""
    dx, dy = float(np.mean(cell[..., 0])), float(np.mean(cell[..., 1]))
    return 1.0 / dx, 1.0 / dy


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
        mode: str = FAST,
        seed: int = 0,
    ) -> np.ndarray:
        """Upscale one float32 (C, h, w) image in [0, 1] to (C, round(h*sy), round(w*sx))."""
        ...

    def upscale_batch(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        cell: np.ndarray | None = None,
        pixel_offsets: np.ndarray | None = None,
        mode: str = FAST,
        seed: int = 0,
    ) -> np.ndarray:
        """Upscale a batch (N, C, h, w) to (N, C, H, W), sampling at ``coords`` (N, H, W, 2)."""
        ...


class BatchUpscaleMixin:
    """The simple ``upscale`` form on top of ``upscale_batch``: one image, a regular grid
    with zero origin.

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
        field = regular_field(np.zeros((1, 2)), sxy, shape)
        return self.upscale_batch(lr[None], field, None, None, mode, seed)[0]
