"""Side-by-side comparison crops (PNG) of LR / bicubic / fast / diffusion / HR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from training.protocol import make_eval_pair, model_sr

CROP = 96


def _tile(img: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> centre crop, (CROP, CROP, 3) uint8."""
    h, w = img.shape[-2:]
    top, left = (h - CROP) // 2, (w - CROP) // 2
    crop = img[0, :, top : top + CROP, left : left + CROP].clamp(0, 1)
    return (crop.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def comparison_png(up, images: list[np.ndarray], stage: str, path: Path, scale: float = 4.0):
    """One row per image; columns LR (nearest) | bicubic | fast | diffusion | HR (autoencoder
    stage: HR | reconstruction)."""
    rows = []
    for img in images:
        hr, lr = make_eval_pair(img, (scale, scale))
        size = hr.shape[-2:]
        if stage == "autoencoder":
            with torch.no_grad():
                cols = [hr, up.net.ae(hr)]
        else:
            cols = [
                F.interpolate(lr, size=size, mode="nearest"),
                model_sr(up, lr, size, (scale, scale), "bicubic"),
                model_sr(up, lr, size, (scale, scale), "fast"),
                model_sr(up, lr, size, (scale, scale), "diffusion"),
                hr,
            ]
        rows.append(np.concatenate([_tile(c) for c in cols], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize(
        (grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST
    ).save(path)
