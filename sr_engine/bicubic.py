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
