"""The degradation model: how training makes a LR patch from a HR patch (decision 0304).

Each patch of a batch draws its own degradation; the batch shares one (maybe anisotropic)
scale so that the LR patches stack. Blur and decimation are one separable linear map per
axis whose row ``j`` is the kernel centred on LR pixel ``j``. With HR pixel ``k`` covering
``[k, k + 1)`` and LR pixel ``j`` covering ``[j, j + 1)`` in its own units, LR pixel ``j``
sits at HR coordinate ``(j + 0.5 + shift) * s``. The shift is drawn per patch and axis, in
LR pixels. The HR target's pixel centres are therefore at LR coordinates
``(c + 0.5) / s - shift``: an output origin of ``-shift``, the coordinate contract of
``sr_engine.interface``. The target is exact whatever the shift.

Kernels (per patch): antialiased bicubic (PIL/torch ``antialias=True``, a = -0.5, support
2s), area averaging (exact fractional box of width s), or a Gaussian PSF of sigma
``f * s`` HR px with ``f`` in ``sigma_range`` (independent per axis with
``aniso_sigma_prob``), integrated over each HR pixel. Rows are renormalised at the patch
border, as PIL does. Then sensor noise (Gaussian, read + shot), 8-bit rounding, and JPEG or
WebP at a random quality. A share ``clean_prob`` of the patches get the evaluation
protocol's degradation: antialiased bicubic, no shift, no noise, no compression.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image

KERNELS = ("bicubic", "area", "gaussian")


@dataclass
class DegradationConfig:
    """Knobs of the degradation model (``train.<stage>.degradations`` in params.yaml)."""

    clean_prob: float = 1.0  # share of patches with the evaluation protocol's degradation
    kernel_weights: tuple[float, float, float] = (0.3, 0.3, 0.4)  # bicubic, area, gaussian
    sigma_range: tuple[float, float] = (0.3, 0.8)  # Gaussian PSF sigma / scale
    aniso_sigma_prob: float = 0.3
    shift_max: float = 0.5  # LR px, per axis
    noise_prob: float = 0.5
    read_noise_max: float = 0.01  # std, in [0, 1] units
    shot_noise_max: float = 0.01  # std at value 1 (std = shot * sqrt(value))
    jpeg_prob: float = 0.2
    webp_prob: float = 0.1
    quality_range: tuple[int, int] = (60, 95)

    @classmethod
    def from_dict(cls, data: dict | None) -> DegradationConfig:
        """From a params.yaml section (None or {}: protocol degradation only)."""
        unknown = set(data or {}) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown degradation settings: {sorted(unknown)}")
        values: dict = {k: tuple(v) if isinstance(v, list) else v for k, v in (data or {}).items()}
        return cls(**values)


@dataclass
class PatchDegradation:
    """What one patch drew (kept for tests and the model card's examples)."""

    kernel: str
    sigma: tuple[float, float]  # Gaussian sigma / scale per axis (x, y); 0 for the others
    shift: tuple[float, float]  # LR px (x, y)
    read_noise: float
    shot_noise: float
    codec: str  # "", "jpeg" or "webp"
    quality: int


def _cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    return np.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
    )


def axis_matrix(
    hr_len: int, lr_len: int, kernel: str, sigma: float = 0.0, shift: float = 0.0
) -> np.ndarray:
    """(lr_len, hr_len) float64 map of one axis: blur with ``kernel`` and sample at the LR
    pixel centres ``(j + 0.5 + shift) * s`` (HR coordinates), ``s = hr_len / lr_len``.

    ``sigma`` is the Gaussian's sigma in units of ``s``. Rows sum to 1.
    """
    s = hr_len / lr_len
    centres = (np.arange(lr_len) + 0.5 + shift) * s  # (lr,)
    edges = np.arange(hr_len + 1, dtype=np.float64)  # HR pixel edges
    if kernel == "bicubic":
        w = _cubic((edges[None, :-1] + 0.5 - centres[:, None]) / max(s, 1.0))
    elif kernel == "area":
        lo, hi = centres[:, None] - s / 2, centres[:, None] + s / 2
        w = np.clip(np.minimum(hi, edges[None, 1:]) - np.maximum(lo, edges[None, :-1]), 0, None)
    elif kernel == "gaussian":
        z = (edges[None, :] - centres[:, None]) / (sigma * s * math.sqrt(2.0))
        cdf = 0.5 * (1.0 + _erf(z))
        w = cdf[:, 1:] - cdf[:, :-1]
    else:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    total = w.sum(axis=1, keepdims=True)
    return w / np.where(total > 1e-12, total, 1.0)


def _erf(z: np.ndarray) -> np.ndarray:
    return torch.special.erf(torch.from_numpy(z)).numpy()


def draw(rng: np.random.Generator, cfg: DegradationConfig) -> PatchDegradation:
    """One patch's degradation."""
    if rng.random() < cfg.clean_prob:
        return PatchDegradation("bicubic", (0.0, 0.0), (0.0, 0.0), 0.0, 0.0, "", 0)
    weights = np.asarray(cfg.kernel_weights, dtype=np.float64)
    kernel = KERNELS[int(rng.choice(len(KERNELS), p=weights / weights.sum()))]
    sigma = (0.0, 0.0)
    if kernel == "gaussian":
        sx = float(rng.uniform(*cfg.sigma_range))
        sy = float(rng.uniform(*cfg.sigma_range)) if rng.random() < cfg.aniso_sigma_prob else sx
        sigma = (sx, sy)
    shift = (
        float(rng.uniform(-cfg.shift_max, cfg.shift_max)),
        float(rng.uniform(-cfg.shift_max, cfg.shift_max)),
    )
    read = shot = 0.0
    if rng.random() < cfg.noise_prob:
        read = float(rng.uniform(0, cfg.read_noise_max))
        shot = float(rng.uniform(0, cfg.shot_noise_max))
    u = rng.random()
    codec = "jpeg" if u < cfg.jpeg_prob else "webp" if u < cfg.jpeg_prob + cfg.webp_prob else ""
    quality = int(rng.integers(cfg.quality_range[0], cfg.quality_range[1] + 1)) if codec else 0
    return PatchDegradation(kernel, sigma, shift, read, shot, codec, quality)


def compress(lr8: np.ndarray, codec: str, quality: int) -> np.ndarray:
    """Round-trip an (h, w, 3) uint8 image through JPEG or WebP (Pillow)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(lr8)).save(
        buf, format="JPEG" if codec == "jpeg" else "WEBP", quality=quality
    )
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        return np.array(img.convert("RGB"))


def apply(
    hr: torch.Tensor, lr_size: tuple[int, int], d: PatchDegradation, gen: torch.Generator
) -> torch.Tensor:
    """Degrade one HR patch (3, H, W) in [0, 1] to LR (3, h, w) on the 8-bit grid."""
    (big_h, big_w), (h, w) = hr.shape[-2:], lr_size
    ay = axis_matrix(big_h, h, d.kernel, d.sigma[1], d.shift[1])
    ax = axis_matrix(big_w, w, d.kernel, d.sigma[0], d.shift[0])
    my = torch.from_numpy(ay).to(hr)
    mx = torch.from_numpy(ax).to(hr)
    lr = torch.einsum("yY,cYX,xX->cyx", my, hr, mx)
    if d.read_noise or d.shot_noise:
        std = (d.read_noise**2 + d.shot_noise**2 * lr.clamp_min(0.0)).sqrt()
        lr = lr + std * torch.randn(lr.shape, generator=gen, device=lr.device, dtype=lr.dtype)
    lr = (lr.clamp(0.0, 1.0) * 255.0).round()
    if d.codec:
        arr = lr.permute(1, 2, 0).to(torch.uint8).cpu().numpy()
        lr = torch.from_numpy(compress(arr, d.codec, d.quality)).permute(2, 0, 1).to(hr)
    return lr / 255.0


def degrade_batch(
    hr: torch.Tensor,
    lr_size: tuple[int, int],
    rng: np.random.Generator,
    cfg: DegradationConfig,
) -> tuple[torch.Tensor, np.ndarray, list[PatchDegradation]]:
    """(LR batch (N, 3, h, w), output origins (N, 2) = -shift, the draws) for HR (N, 3, H, W)."""
    gen = torch.Generator(device=hr.device).manual_seed(int(rng.integers(2**31)))
    draws = [draw(rng, cfg) for _ in range(hr.shape[0])]
    lr = torch.stack([apply(x, lr_size, d, gen) for x, d in zip(hr, draws, strict=True)])
    origins = -np.array([d.shift for d in draws], dtype=np.float64).reshape(-1, 2)
    return lr, origins, draws
