"""Bicubic baseline that samples at exact output-pixel coordinates (seam-free by design)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sr_engine.interface import BatchUpscaleMixin, sample_coordinates


def sampling_grid(
    origins: np.ndarray,
    scale: tuple[float, float],
    out_shape: tuple[int, int],
    lr_shape: tuple[int, int],
) -> torch.Tensor:
    """``grid_sample`` grid (N, H, W, 2) for the output pixel centres (align_corners=False)."""
    xs, ys = sample_coordinates(origins, scale, out_shape)
    h, w = lr_shape
    gx = torch.from_numpy(2.0 * xs / w - 1.0).float()  # (N, W)
    gy = torch.from_numpy(2.0 * ys / h - 1.0).float()  # (N, H)
    n, height, width = gx.shape[0], out_shape[0], out_shape[1]
    grid = torch.empty((n, height, width, 2), dtype=torch.float32)
    grid[..., 0] = gx[:, None, :]
    grid[..., 1] = gy[:, :, None]
    return grid


def bicubic_sample(
    lr: torch.Tensor,
    scale: tuple[float, float],
    out_shape: tuple[int, int],
    origins: np.ndarray,
) -> torch.Tensor:
    """Bicubic (a=-0.75) interpolation of ``lr`` (N, C, h, w) at the exact output coordinates."""
    grid = sampling_grid(origins, scale, out_shape, (lr.shape[-2], lr.shape[-1])).to(lr.device)
    return F.grid_sample(lr, grid, mode="bicubic", padding_mode="border", align_corners=False)


class BicubicUpscaler(BatchUpscaleMixin):
    """The non-learned upscaler: always available, also the fallback of every model mode."""

    version = "bicubic-1"
    modes: tuple[str, ...] = ("bicubic",)
    default_mode = "bicubic"
    halo = 2

    def upscale_batch(
        self,
        lr: np.ndarray,
        scale: tuple[float, float],
        out_shape: tuple[int, int],
        origins: np.ndarray,
        pixel_offsets: np.ndarray | None = None,
        mode: str = "bicubic",
        seed: int = 0,
    ) -> np.ndarray:
        """Upscale a batch (N, C, h, w) float32 in [0, 1]; ``mode`` and ``seed`` are ignored."""
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
            out = bicubic_sample(tensor, scale, out_shape, origins)
            return out.clamp_(0.0, 1.0).numpy()
