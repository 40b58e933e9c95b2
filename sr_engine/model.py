"""The HNDSR model: autoencoder, neural operator (`fast`) and few-step diffusion refiner.

Read top to bottom: config, the three parts, coordinate-derived noise, then the sampling
code that ties them to the coordinate contract of ``sr_engine.interface``.

- ``Operator`` (the `fast` mode): a residual conv encoder at low resolution, then for every
  output pixel a bias-free MLP (1x1 convs) fed with the bilinearly interpolated local
  features, the sub-pixel phase of the query (continuous Fourier encoding of its offset to
  the nearest LR pixel centre) and the cell size (1/sx, 1/sy). It predicts the residual
  over bicubic sampled at the same coordinates. The encoder sees the LR image minus its
  local mean and has no biases, so a constant image gives a zero residual exactly.
- ``AutoEncoder``: a full-resolution, non-compressing conv autoencoder (3 -> ``latent``
  channels). The refiner works in its latent space.
- ``Refiner`` (the `diffusion` mode): an x0-predicting DDIM denoiser of the latent residual
  ``E(hr) - E(fast)``, conditioned by concatenation on ``E(fast)`` and on the operator's
  per-pixel decoder features (LR context that ``fast`` alone no longer carries). Residuals
  are added as ``D(E(fast) + r) - D(E(fast))``, so the autoencoder's own error cancels and
  cannot cap fidelity. The first DDIM step's prediction (the conditional mean) is added
  above the LR Nyquist; the sample's deviation from it only in the top octave
  (``detail_band``).
  Its noise is a hash of (seed, absolute pixel row/col, channel), so overlapping tiles draw
  the same noise for the same pixel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sr_engine.bicubic import bicubic_at, cell_value_at, sample_at
from sr_engine.interface import (
    BatchUpscaleMixin,
    extend_field,
    field_cell,
    field_scale,
    regular_field,
)
from sr_engine.modes import BICUBIC, FAST, SR_MODES


@dataclass
class HNDSRConfig:
    """Every architecture knob; stored in the checkpoint's metadata."""

    feats: int = 32  # encoder width (LR)
    blocks: int = 4  # residual blocks in the encoder
    wide_blocks: int = 0  # residual blocks widened to ``wide_feats`` inside, after ``blocks``
    wide_feats: int = 64
    hidden: int = 64  # decoder MLP width
    harmonics: int = 2  # Fourier harmonics of the sub-pixel phase
    cell_gate: bool = False  # learn a per-pixel share of the LR cell's own value (0307)
    latent: int = 8  # autoencoder latent channels (full resolution)
    ae_width: int = 32
    refiner_width: int = 32
    steps: int = 2  # default DDIM steps of the diffusion mode
    temperature: float = 1.0  # scale of the initial noise
    residual_scale: float = 0.05  # std of the latent residual (set in training)
    gate_eps: float = 0.01  # flat-area gate: texture * s / (s + eps), s = local std of fast

    def encoder_radius(self) -> int:
        """LR pixels an encoder feature depends on, on each side (local mean + convs)."""
        return 1 + 1 + 2 * (self.blocks + self.wide_blocks) + 1

    def fast_halo(self) -> int:
        """LR context the `fast` mode needs: encoder radius + bilinear support + rounding."""
        return self.encoder_radius() + 2

    def refiner_margin(self, scale: float = 2.0) -> int:
        """HR pixels the diffusion mode looks around a pixel: E (2) + refiner (5: three 3x3
        convs and one dilated by 2) + D (2) + the wider of the mean's high-pass and the
        texture's band-pass at this scale."""
        return 9 + max(detail_band_radius(scale), highpass_radius(scale))

    def halo(self) -> int:
        """The upscaler's halo: `fast` context plus the refiner margin at scale 2 (LR px)."""
        return self.fast_halo() + math.ceil(self.refiner_margin(2.0) / 2)


SCALE_DECIMALS = 2
"""The diffusion mode's bands use each tile's nominal scale rounded to this many decimals,
so that the tiles of one zoom (whose scales differ a little off a regular grid) batch
together and filter alike."""
DETAIL_SCALE_CAP = 2.0  # past x2 the band starts at half the HR Nyquist, not the LR Nyquist


def detail_cutoff_scale(scale: float) -> float:
    """The scale whose LR Nyquist (0.5 / s) is where the detail band starts: ``min(s, 2)``."""
    return min(scale, DETAIL_SCALE_CAP)


def highpass_sigma(scale: float) -> float:
    """Gaussian sigma (HR px) whose half-power frequency is the LR Nyquist 0.5/scale."""
    return math.sqrt(math.log(2) / 2) / math.pi * 2.0 * scale


def highpass_radius(scale: float) -> int:
    """Kernel radius (HR px) of one Gaussian high-pass at this scale."""
    return math.ceil(2.5 * highpass_sigma(scale))


def detail_band_radius(scale: float) -> int:
    """HR pixels the detail band-pass reaches (two high-pass passes)."""
    return highpass_radius(detail_cutoff_scale(scale)) + highpass_radius(DETAIL_SCALE_CAP)


def gaussian_highpass(x: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """``x`` minus a separable Gaussian low-pass whose half-power point is 0.5/scale per axis."""
    out = x
    for axis, s in ((3, scale[0]), (2, scale[1])):
        r = highpass_radius(s)
        t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-(t**2) / (2 * highpass_sigma(s) ** 2))
        k = (k / k.sum()).reshape((1, 1, 1, -1) if axis == 3 else (1, 1, -1, 1))
        pad = (r, r, 0, 0) if axis == 3 else (0, 0, r, r)
        c = out.shape[1]
        out = F.conv2d(F.pad(out, pad, mode="replicate"), k.expand(c, 1, *k.shape[2:]), groups=c)
    return x - out


def detail_band(x: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """Keep the band the refiner may fill: a high-pass at the LR Nyquist (at half the HR
    Nyquist past x2) followed by one at half the HR Nyquist, for a steep edge there.

    Below the LR Nyquist the `fast` output already explains the image; between the LR
    Nyquist and half the HR Nyquist (x > 2) lies structure (shapes, edges' positions) that
    the LR does not pin down, and sampling it doubles the error where most of it is
    (decision 0303). The refiner only adds texture in the top octave.
    """
    cut = (detail_cutoff_scale(scale[0]), detail_cutoff_scale(scale[1]))
    half_nyquist = (DETAIL_SCALE_CAP, DETAIL_SCALE_CAP)
    return gaussian_highpass(gaussian_highpass(x, cut), half_nyquist)


def _conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def local_mean(x: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Box mean over a (2r+1)^2 window, edge-replicated."""
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


class ResBlock(nn.Module):
    """conv-relu-conv with a skip (``ch`` -> ``inner`` -> ``ch``); bias-free so that zero
    input gives zero output. ``zero_init`` starts the block as the identity, so blocks can be
    added to a trained encoder without changing what it computes."""

    def __init__(self, ch: int, inner: int | None = None, zero_init: bool = False):
        super().__init__()
        self.conv1 = _conv(ch, inner or ch, bias=False)
        self.conv2 = _conv(inner or ch, ch, bias=False)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def interpolate_features(feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of ``feat`` (N, C, h, w) at LR coordinates ``coords``
    (N, H, W, 2), edges clamped; returns channels-last (N, H, W, C)."""
    return sample_at(feat, coords, "bilinear").permute(0, 2, 3, 1)


def regular_inputs(
    lr: torch.Tensor,
    scale: tuple[float, float],
    out_shape: tuple[int, int],
    origins: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(coords, cell)`` of the regular grid of ``sr_engine.interface.regular_field``, as
    tensors on ``lr``'s device and dtype (training and tests feed the operator with them)."""
    coords = torch.from_numpy(regular_field(origins, scale, out_shape)).to(lr.device, lr.dtype)
    cell = torch.tensor([1.0 / scale[0], 1.0 / scale[1]], dtype=lr.dtype, device=lr.device)
    return coords, cell.expand(coords.shape).contiguous()


class Operator(nn.Module):
    """LIIF/LTE-style continuous decoder over a LR conv encoder; predicts a bicubic residual."""

    def __init__(self, cfg: HNDSRConfig):
        super().__init__()
        self.cfg = cfg
        self.head = _conv(3, cfg.feats, bias=False)
        self.body = nn.Sequential(*[ResBlock(cfg.feats) for _ in range(cfg.blocks)])
        self.wide = nn.Sequential(
            *[ResBlock(cfg.feats, cfg.wide_feats, zero_init=True) for _ in range(cfg.wide_blocks)]
        )
        self.last = _conv(cfg.feats, cfg.feats, bias=False)
        # decoder MLP (per output pixel, channels-last): bias-free, modulated by position
        self.tail = nn.Linear(cfg.feats, cfg.hidden, bias=False)
        self.pos_x = nn.Parameter(torch.randn(cfg.hidden, 2 * cfg.harmonics) * 0.3)
        self.pos_y = nn.Parameter(torch.randn(cfg.hidden, 2 * cfg.harmonics) * 0.3)
        self.pos_cell = nn.Parameter(torch.randn(cfg.hidden, 2) * 0.3)
        self.mid = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.out = nn.Linear(cfg.hidden, 3, bias=False)
        if cfg.cell_gate:
            # starts at zero: a grown checkpoint computes what it did (training.train.GROWN)
            self.cell_gate = nn.Linear(cfg.hidden, 1)
            nn.init.zeros_(self.cell_gate.weight)
            nn.init.zeros_(self.cell_gate.bias)

    def features(self, lr: torch.Tensor) -> torch.Tensor:
        """Encoder features (N, feats, h, w) of the local detail ``lr - local_mean(lr)``."""
        return self.last(self.wide(self.body(self.head(lr - local_mean(lr)))))

    def phase(self, coords: torch.Tensor) -> torch.Tensor:
        """Fourier encoding (..., 2*harmonics) of LR coordinates: continuous, period 1 px."""
        k = torch.arange(1, self.cfg.harmonics + 1, device=coords.device, dtype=coords.dtype)
        angle = 2.0 * math.pi * coords[..., None] * k
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)

    def forward(
        self, lr: torch.Tensor, coords: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR image (N, 3, H, W) sampled at ``coords`` (unclamped), the decoder's last
        hidden layer (N, hidden, H, W)).

        ``coords`` (N, H, W, 2): output pixel centres in LR-window pixel coordinates;
        ``cell`` (N, H, W, 2): the footprint of each output pixel in LR pixels (see
        ``sr_engine.interface``). Both in ``lr``'s dtype.
        """
        h = self.tail(interpolate_features(self.features(lr), coords))
        # positional modulation: sub-pixel phase of x and y, and the cell size, per pixel
        position = torch.cat(
            [self.phase(coords[..., 0] % 1.0), self.phase(coords[..., 1] % 1.0), cell], dim=-1
        )
        weights = torch.cat([self.pos_x, self.pos_y, self.pos_cell], dim=1)
        h = F.relu(h * (1.0 + position @ weights.T))
        hidden = F.relu(self.mid(h))
        residual = self.out(hidden).permute(0, 3, 1, 2)
        base = bicubic_at(lr, coords)
        sr = base + residual
        if self.cfg.cell_gate:
            # the value of the LR cell holding the pixel, weighted per pixel: the one term
            # that may step at LR cell edges, where an area-averaged source's fine pixels do
            share = self.cell_gate(hidden).permute(0, 3, 1, 2)
            sr = sr + share * (cell_value_at(lr, coords) - base)
        return sr, hidden.permute(0, 3, 1, 2)


class AutoEncoder(nn.Module):
    """Full-resolution conv autoencoder: image (3 ch) <-> latent (``latent`` ch)."""

    def __init__(self, cfg: HNDSRConfig):
        super().__init__()
        w = cfg.ae_width
        self.enc = nn.Sequential(_conv(3, w), nn.ReLU(), _conv(w, cfg.latent))
        self.dec = nn.Sequential(_conv(cfg.latent, w), nn.ReLU(), _conv(w, 3))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x - 0.5)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z) + 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Refiner(nn.Module):
    """x0-predicting denoiser of the (normalized) latent residual, conditioned on E(fast)
    and on the operator's decoder features (projected to ``latent`` channels)."""

    def __init__(self, cfg: HNDSRConfig):
        super().__init__()
        w, c = cfg.refiner_width, cfg.latent
        self.context = nn.Conv2d(cfg.hidden, c, 1)
        self.net = nn.Sequential(
            _conv(3 * c + 1, w),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=2, dilation=2),
            nn.ReLU(),
            _conv(w, w),
            nn.ReLU(),
            _conv(w, c),
        )

    def forward(
        self, z_t: torch.Tensor, cond: torch.Tensor, hidden: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        t_map = t.to(z_t).reshape(-1, 1, 1, 1).expand(z_t.shape[0], 1, *z_t.shape[-2:])
        return self.net(torch.cat([z_t, cond, self.context(hidden), t_map], dim=1))


def alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """Cosine noise schedule on continuous time t in [0, 1] (t=1: pure noise)."""
    return torch.cos((t + 0.008) / 1.008 * math.pi / 2).pow(2).clamp(0.0, 1.0)


_MASK = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """32-bit integer mix (int64 tensors holding values in [0, 2^32))."""
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _MASK
    return x ^ (x >> 16)


def coordinate_noise(
    seed: int, channels: int, rows: torch.Tensor, cols: torch.Tensor, stream: int = 0
) -> torch.Tensor:
    """Standard normal noise (N, channels, H, W) that depends only on absolute pixel indices.

    ``rows`` (N, H) and ``cols`` (N, W) are absolute HR pixel indices (int64); the same
    (seed, row, col, channel, stream) always gives the same value, whatever the tile.
    """
    base = _hash32(torch.tensor((seed * 7919 + stream * 104729) & _MASK, dtype=torch.int64))
    kr = _hash32(base ^ (rows & _MASK))[:, None, :, None]
    kc = _hash32((cols & _MASK) ^ 0x5BD1E995)[:, None, None, :]
    k = _hash32(kr ^ kc)  # (N, 1, H, W)
    lanes = torch.arange(2 * channels, dtype=torch.int64, device=k.device)
    u = _hash32(k ^ _hash32(lanes + 0x27D4EB2F)[None, :, None, None])
    u = (u.to(torch.float64) + 0.5) / 2.0**32
    u1, u2 = u[:, :channels], u[:, channels:]
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).float()


class HNDSR(nn.Module):
    """The three parts and the two learned sampling procedures (`fast`, `diffusion`)."""

    def __init__(self, cfg: HNDSRConfig):
        super().__init__()
        self.cfg = cfg
        self.ae = AutoEncoder(cfg)
        self.operator = Operator(cfg)
        self.refiner = Refiner(cfg)

    def fast(self, lr: torch.Tensor, coords: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """`fast` mode on RGB (N, 3, h, w) at ``coords`` with footprint ``cell``, unclamped."""
        return self.operator(lr, coords, cell)[0]

    def detail_gate(self, img: torch.Tensor) -> torch.Tensor:
        """s / (s + eps) with s the 5x5 local std of the grey image: 0 on flat areas
        (std below 1e-3, a quarter of an 8-bit step, counts as flat)."""
        grey = img.mean(dim=1, keepdim=True)
        var = local_mean(grey * grey, 2) - local_mean(grey, 2) ** 2
        s = (var - 1e-6).clamp_min(0.0).sqrt()
        return s / (s + self.cfg.gate_eps)

    def refine(
        self,
        fast: torch.Tensor,
        hidden: torch.Tensor,
        noise: torch.Tensor,
        steps: int,
        temperature: float,
        scale: tuple[float, float],
    ) -> torch.Tensor:
        """DDIM (eta=0) from ``temperature * noise`` to the refined image, in ``steps`` steps.

        The first step's x0 (t = 1: the conditional mean of the residual) is added above the
        LR Nyquist (what the LR cannot see); what the later steps add to it (sampled
        texture) only in ``detail_band`` and where ``fast`` is not flat.
        """
        cond = self.ae.encode(fast)
        z = temperature * noise
        times = torch.linspace(1.0, 0.0, steps + 1, device=fast.device)
        # t = 1 is pure noise: the prediction there is the conditional mean, computed from a
        # zero input (as trained), so it does not depend on the seed
        mean = x0 = self.refiner(torch.zeros_like(z), cond, hidden, times[0].expand(z.shape[0]))
        for t_from, t in zip(times[: steps - 1], times[1:steps], strict=True):
            ab_from, ab = alpha_bar(t_from), alpha_bar(t)
            eps = (z - ab_from.sqrt() * x0) / (1.0 - ab_from).clamp_min(1e-8).sqrt()
            z = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps
            x0 = self.refiner(z, cond, hidden, t.expand(z.shape[0]))
        rs = self.cfg.residual_scale
        with_mean = self.ae.decode(cond + mean * rs)
        texture = self.ae.decode(cond + x0 * rs) - with_mean
        return (
            fast
            + gaussian_highpass(with_mean - self.ae.decode(cond), scale)
            + self.detail_gate(fast) * detail_band(texture, scale)
        )


def band_groups(channels: int) -> list[tuple[int, int, int]]:
    """How C bands map onto the RGB model: consecutive triplets, leftovers one by one (grey)."""
    full = channels // 3 * 3
    groups = [(i, i + 1, i + 2) for i in range(0, full, 3)]
    return groups + [(j, j, j) for j in range(full, channels)]


class HNDSRUpscaler(BatchUpscaleMixin):
    """``sr_engine.interface.Upscaler`` over an ``HNDSR`` network and its model card."""

    modes: tuple[str, ...] = SR_MODES
    default_mode = FAST

    def __init__(self, net: HNDSR, version: str, card: dict | None = None, device: str = "cpu"):
        self.net = net.to(device).eval()
        self.version = version
        self.card = card or {}
        self.device = torch.device(device)
        # diffusion grows the output by refiner_margin HR px; at scale >= 2 the halo
        # covers that exactly (see docs/model.md)
        self.halo = net.cfg.halo()

    def upscale_batch(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        cell: np.ndarray | None = None,
        pixel_offsets: np.ndarray | None = None,
        mode: str = FAST,
        seed: int = 0,
        steps: int | None = None,
        temperature: float | None = None,
    ) -> np.ndarray:
        """Upscale (N, C, h, w) float32 in [0, 1] to (N, C, H, W) at ``coords`` (N, H, W, 2)
        float64; ``cell`` defaults to the field's local footprint (``field_cell``)."""
        if mode not in self.modes:
            raise ValueError(f"unknown mode {mode!r}; expected one of {self.modes}")
        n, channels = lr.shape[:2]
        coords = np.asarray(coords, dtype=np.float64).reshape(n, *np.shape(coords)[-3:])
        out_shape = coords.shape[1:3]
        cell = field_cell(coords) if cell is None else np.asarray(cell, dtype=np.float64)
        offsets = np.zeros((n, 2)) if pixel_offsets is None else np.asarray(pixel_offsets)
        groups = band_groups(channels)
        index = [c for g in groups for c in g]
        rep = len(groups)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).to(self.device)
            x = x[:, index].reshape(n * rep, 3, *x.shape[-2:])
            field = np.repeat(coords, rep, axis=0)
            cells = np.repeat(cell, rep, axis=0)
            off = np.repeat(offsets.reshape(n, 2).astype(np.int64), rep, axis=0)
            if mode == BICUBIC:
                y = bicubic_at(x, torch.from_numpy(field))
            elif mode == FAST:
                y = self.net.fast(x, self._tensor(field, x), self._tensor(cells, x))
            else:
                y = self._diffusion(x, field, cells, off, seed, steps, temperature)
            y = y.clamp(0.0, 1.0).reshape(n, rep, 3, *out_shape)
            out = torch.empty((n, channels, *out_shape), dtype=torch.float32, device=y.device)
            for gi, g in enumerate(groups):
                if g[0] == g[1]:
                    out[:, g[0]] = y[:, gi].mean(dim=1)
                else:
                    out[:, g[0] : g[0] + 3] = y[:, gi]
            return out.cpu().numpy()

    @staticmethod
    def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(like.device, like.dtype)

    def _diffusion(self, x, coords, cell, offsets, seed, steps, temperature):
        """Refine on the field grown by the refiner margin, then crop (seam-free tiles).

        The grown field extrapolates each edge's gradient (exact for affine fields); the
        refiner's frequency bands follow each item's nominal scale (``field_scale``, rounded
        so that the tiles of one zoom share it).
        """
        cfg = self.net.cfg
        scales = [tuple(round(s, SCALE_DECIMALS) for s in field_scale(c)) for c in cell]
        m = cfg.refiner_margin(max(max(s) for s in scales))
        height, width = coords.shape[1:3]
        grown = extend_field(coords, m)
        grown_cell = np.pad(cell, ((0, 0), (m, m), (m, m), (0, 0)), mode="edge")
        fast, hidden = self.net.operator(x, self._tensor(grown, x), self._tensor(grown_cell, x))
        rows = offsets[:, 1:2] - m + np.arange(grown.shape[1])[None]
        cols = offsets[:, 0:1] - m + np.arange(grown.shape[2])[None]
        noise = coordinate_noise(
            seed,
            cfg.latent,
            torch.from_numpy(rows).to(x.device),
            torch.from_numpy(cols).to(x.device),
        )
        steps = steps if steps is not None else cfg.steps
        temperature = temperature if temperature is not None else cfg.temperature
        if len(set(scales)) == 1:
            out = self.net.refine(fast, hidden, noise, steps, temperature, scales[0])
        else:
            out = torch.empty_like(fast)
            for scale in set(scales):
                idx = torch.tensor([i for i, s in enumerate(scales) if s == scale])
                idx = idx.to(x.device)
                out[idx] = self.net.refine(
                    fast[idx], hidden[idx], noise[idx], steps, temperature, scale
                )
        return out[..., m : m + height, m : m + width]


def config_dict(cfg: HNDSRConfig) -> dict:
    """Plain dict of a config (JSON-able)."""
    return asdict(cfg)
