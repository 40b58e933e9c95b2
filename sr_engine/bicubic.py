"""Bicubic baseline that samples at exact output-pixel coordinates (seam-free by design)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sr_engine.interface import BatchUpscaleMixin
from sr_engine.modes import BICUBIC


def sampling_grid(coords: torch.Tensor, lr_shape: tuple[int, int]) -> torch.Tensor:
    """``grid_sample`` grid (N, H, W, 2) of LR-window coordinates (align_corners=False)."""
    h, w = lr_shape
    size = torch.tensor([w, h], dtype=coords.dtype, device=coords.device)
    return 2.0 * coords / size - 1.0


def sample_at(lr: torch.Tensor, coords: torch.Tensor, mode: str) -> torch.Tensor:
    """``grid_sample`` of ``lr`` (N, C, h, w) at LR coordinates ``coords`` (N, H, W, 2),
    edges replicated; returns (N, C, H, W). The grid is normalized in ``coords``' dtype
    (float64 keeps it exact on large windows), then cast to ``lr``'s."""
    grid = sampling_grid(coords.to(lr.device), (lr.shape[-2], lr.shape[-1])).to(lr.dtype)
    return F.grid_sample(lr, grid, mode=mode, padding_mode="border", align_corners=False)


EDGE_TOLERANCE_PX = 1e-4
"""A coordinate this close to a LR cell edge counts as on it: float32 window coordinates of
the same ground point differ by about this much from one tile's window to the next."""


def cell_value_at(lr: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The value (N, C, H, W) of the LR cell of ``lr`` (N, C, h, w) holding each coordinate
    of ``coords`` (N, H, W, 2), edges replicated. A coordinate on a cell edge (within
    ``EDGE_TOLERANCE_PX``) takes the right / lower cell, in every window alike, so that a
    value which steps at cell edges stays seam-free."""
    n, c, h, w = lr.shape
    cells = torch.floor(coords.to(lr.device) + EDGE_TOLERANCE_PX).long()
    ix, iy = cells[..., 0].clamp(0, w - 1), cells[..., 1].clamp(0, h - 1)
    index = (iy * w + ix).reshape(n, 1, -1).expand(n, c, -1)
    return lr.reshape(n, c, h * w).gather(2, index).reshape(n, c, *coords.shape[1:3])


def bicubic_at(lr: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bicubic (a=-0.75) interpolation of ``lr`` (N, C, h, w) at ``coords`` (N, H, W, 2)."""
    return sample_at(lr, coords, "bicubic")


class BicubicUpscaler(BatchUpscaleMixin):
    """The non-learned upscaler: always available, also the fallback of every model mode."""

    version = "bicubic-1"
    modes: tuple[str, ...] = (BICUBIC,)
    default_mode = BICUBIC
    halo = 2

    def upscale_batch(
        self, lr: np.ndarray, coords: np.ndarray, *_ignored: object, **_ignored_by_name: object
    ) -> np.ndarray:
        """Upscale a batch (N, C, h, w) float32 in [0, 1] at ``coords`` (N, H, W, 2); the
        other arguments of ``Upscaler.upscale_batch`` (cell, pixel offsets, mode, seed)
        change nothing in bicubic, so they are accepted and not named again here."""
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
            out = bicubic_at(tensor, torch.from_numpy(np.asarray(coords, dtype=np.float64)))
            return out.clamp_(0.0, 1.0).numpy()
