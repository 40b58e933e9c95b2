"""The diffusion mode's detail band: what the refiner may add, and what it may not touch."""

from __future__ import annotations

import math

import pytest
import torch

from sr_engine.model import HNDSRConfig, detail_band, detail_band_radius


def wave(freq: float, size: int = 256) -> torch.Tensor:
    """A horizontal cosine of ``freq`` cycles per HR pixel, (1, 1, size, size)."""
    x = torch.arange(size, dtype=torch.float32)
    return torch.cos(2 * math.pi * freq * x).expand(size, size)[None, None].clone()


def kept(freq: float, scale: float) -> float:
    """Amplitude fraction of a cosine that survives the band-pass (centre, away from edges)."""
    out = detail_band(wave(freq), (scale, scale))[..., 64:192, 64:192]
    return float(out.pow(2).mean().sqrt() / wave(freq)[..., 64:192, 64:192].pow(2).mean().sqrt())


@pytest.mark.parametrize("scale", [2.5, 4.0, 8.0])
def test_structure_below_half_the_hr_nyquist_is_left_to_fast(scale):
    # past x2 the LR Nyquist (0.5 / s) is below 0.25 cycles/px; what lies between is
    # structure the refiner does not sample, whatever the scale
    assert kept(0.1, scale) < 0.02
    assert kept(0.5 / 8.0, scale) < 0.005


@pytest.mark.parametrize("scale", [2.0, 4.0, 8.0])
def test_top_octave_texture_passes_and_the_response_rises(scale):
    response = [kept(f, scale) for f in (0.1, 0.2, 0.3, 0.4, 0.45)]
    assert response == sorted(response)
    assert response[-1] > 0.7
    assert kept(0.25, scale) == pytest.approx(0.25, abs=0.02)  # two passes at half power


def test_below_x2_the_band_starts_at_the_lr_nyquist():
    # the LR sees up to 0.5 / s cycles/px: the smaller the scale, the less of a wave
    # below that survives, and the band still rises towards the HR Nyquist
    assert kept(0.3, 1.1) < kept(0.3, 1.5) < kept(0.3, 2.0)
    assert kept(0.3, 1.5) < 0.7 * kept(0.3, 2.0)
    assert kept(0.2, 1.1) < 0.03
    assert kept(0.5, 1.1) > 5 * kept(0.2, 1.1)


def test_the_band_and_its_reach_stop_growing_past_x2():
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(detail_band(noise, (4.0, 4.0)), detail_band(noise, (8.0, 8.0)))
    assert detail_band_radius(8.0) == detail_band_radius(2.0)
    cfg = HNDSRConfig()
    # the halo covers the refiner's margin at every scale >= 2 (in LR pixels)
    assert all(
        cfg.fast_halo() + math.ceil(cfg.refiner_margin(s) / s) <= cfg.halo()
        for s in (2.0, 2.5, 4.0, 8.0)
    )


def test_a_constant_passes_as_zero():
    flat = torch.full((1, 3, 40, 40), 0.7)
    assert detail_band(flat, (3.0, 3.0)).abs().max() < 1e-6
