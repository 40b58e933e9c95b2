"""Image quality measures of the evaluation protocol (luminance, border shaved by ceil(s)).

PSNR and SSIM on the BT.601 luma, high-frequency energy (spectral energy above half the
Nyquist frequency) and "fast + noise of matched HF energy", the control that diffusion
detail must beat. Plain torch, so the GPU script can use it too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in [0, 1] (the SR convention's Y of YCbCr) of (N, 3, H, W) RGB in [0, 1]."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=rgb.dtype, device=rgb.device)
    return (16.0 + torch.einsum("nchw,c->nhw", rgb, w))[:, None] / 255.0


def shave(x: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """Drop ceil(sy) rows and ceil(sx) columns on each border."""
    bx, by = math.ceil(scale[0]), math.ceil(scale[1])
    return x[..., by : x.shape[-2] - by, bx : x.shape[-1] - bx]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of (N, 1, H, W) images in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return -10.0 * torch.log10(mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian 11x11, sigma 1.5) of (N, 1, H, W) images in [0, 1]."""
    return ssim_map(a, b).flatten(1).mean(1)


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Local SSIM (N, 1, H - 10, W - 10): one value per 11x11 window fully inside the image."""
    g = _gauss().to(a)
    kernel = (g[:, None] * g[None, :])[None, None]
    blur = lambda x: F.conv2d(x, kernel)  # noqa: E731
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def _hf_mask(shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    fy = torch.fft.fftfreq(shape[0], device=device)
    fx = torch.fft.fftfreq(shape[1], device=device)
    return (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() > 0.25


def hf_energy(y: torch.Tensor) -> torch.Tensor:
    """Per-image spectral energy above half the Nyquist frequency, (N, 1, H, W) -> (N,)."""
    spec = torch.fft.fft2(y.double()).abs().pow(2)
    return (spec * _hf_mask((y.shape[-2], y.shape[-1]), y.device)).flatten(1).sum(1)


def matched_noise(
    base: torch.Tensor, target_hf: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``base`` plus white noise whose HF energy brings ``base`` to ``target_hf`` (per image).

    White noise of variance v adds ``v * H * W`` expected energy to every DFT bin.
    """
    height, width = base.shape[-2:]
    bins = _hf_mask((height, width), base.device).sum()
    extra = (target_hf - hf_energy(base)).clamp_min(0.0)
    sigma = (extra / (height * width * bins)).sqrt().to(base.dtype)
    noise = torch.randn(base.shape, generator=generator, device=base.device, dtype=base.dtype)
    return base + noise * sigma[:, None, None, None]
